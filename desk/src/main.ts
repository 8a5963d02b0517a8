import "./style.css";
import { currentSession, signOut, SIGNED_OUT, type Session } from "./api";
import { clear, h, toast } from "./dom";
import { Live } from "./live";
import { accountView } from "./views/account";
import { accountsView } from "./views/accounts";
import { loginView } from "./views/login";
import { researchView } from "./views/research";
import { riskView } from "./views/risk";

const main = document.getElementById("main")!;
const nav = document.getElementById("nav")!;
const who = document.getElementById("who")!;
const signOutButton = document.getElementById("signout") as HTMLButtonElement;
let session: Session | null = null;
let live: Live | null = null;
let current: HTMLElement | null = null;

function show(view: HTMLElement): void {
  (current as any)?.dispose?.();
  clear(main);
  main.append(view);
  current = view;
  main.focus();
}

async function route(): Promise<void> {
  if (!session) {
    nav.hidden = true;
    signOutButton.hidden = true;
    who.textContent = "";
    show(loginView(start));
    return;
  }
  const [path, query] = (location.hash.replace(/^#/, "") || "/accounts").split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "accounts" && parts[1]) show(await accountView(parts[1], live!));
    else if (parts[0] === "instruments" && parts[1]) {
      // The chart library is most of the bundle: it loads with the first instrument view, not the sign-in.
      const { instrumentView } = await import("./views/instrument");
      show(await instrumentView(decodeURIComponent(parts[1]), params.get("account"), live!));
    }
    else if (parts[0] === "risk") show(await riskView());
    else if (parts[0] === "research") show(await researchView());
    else show(await accountsView());
  } catch (e: any) {
    if (e?.status === 401) {
      session = null;
      return route();
    }
    const message = e?.status === 404 ? "Not found." : e?.message ?? String(e);
    show(h("section", {}, h("h1", {}, "Not available"), h("p", { class: "error", role: "alert" }, message)));
  }
}

async function start(): Promise<void> {
  session = await currentSession();
  if (session) {
    nav.hidden = false;
    signOutButton.hidden = false;
    who.textContent = `${session.user.email} (${session.user.role})`;
    nav.querySelectorAll<HTMLElement>("[data-role]").forEach((el) => {
      el.hidden = !el.dataset.role!.split(" ").includes(session!.user.role);
    });
    live?.close();
    live = new Live();
  }
  await route();
}

signOutButton.addEventListener("click", async () => {
  try {
    await signOut();
  } catch (e: any) {
    toast(e?.message ?? String(e), "error");
  }
  live?.close();
  live = null;
  session = null;
  location.hash = "";
  await route();
});
window.addEventListener(SIGNED_OUT, () => {
  if (!session) return;
  live?.close();
  live = null;
  session = null;
  toast("Your session has ended (it expired, was signed out, or its key was revoked): sign in again.", "error");
  location.hash = "";
  void route();
});
window.addEventListener("hashchange", () => void route());
void start();
