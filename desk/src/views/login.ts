import { ApiProblem, signIn } from "../api";
import { h } from "../dom";

export function loginView(onSignedIn: () => void): HTMLElement {
  const key = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  }) as HTMLInputElement;
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      class: "card login",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          await signIn(key.value.trim());
          key.value = "";
          onSignedIn();
        } catch (e) {
          error.textContent = e instanceof ApiProblem ? e.message : String(e);
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API key. It is exchanged for a session cookie and not kept by the page."),
    h("label", { for: "api-key" }, "API key"),
    key,
    h("button", { type: "submit" }, "Sign in"),
    error,
  );
  return form;
}
