// Tiny DOM helpers: text is always set as text (never innerHTML), so data from the API cannot inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;

export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    // Through the CSSOM, which the page's Content-Security-Policy (style-src 'self') allows.
    else if (name === "style") el.style.cssText = String(value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function money(value: string | null | undefined, digits = 2): string {
  if (value === null || value === undefined || value === "") return "–";
  const n = Number(value);
  if (!Number.isFinite(n)) return value;
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function qty(value: string | null | undefined): string {
  return value === null || value === undefined ? "–" : value;
}

export function pct(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

export function time(value: string | null | undefined): string {
  if (!value) return "–";
  const d = new Date(value);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

export function toast(message: string, kind: "info" | "error" = "info"): void {
  const el = document.getElementById("toast")!;
  el.textContent = message;
  el.className = kind;
  window.setTimeout(() => {
    if (el.textContent === message) el.textContent = "";
  }, 6000);
}

export function table(headers: string[], rows: Node[][], caption?: string): HTMLElement {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c) => h("td", {}, c))))),
  );
}

/** A wide table's own sideways scroller: a named region that takes keyboard focus, so the arrow keys
 * scroll it where the screen is narrower than the table. */
export function scroller(label: string, child: Node): HTMLElement {
  return h("div", { class: "scroll-x", tabindex: 0, role: "region", "aria-label": label }, child);
}
