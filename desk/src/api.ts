// The desk talks to the public API only, authenticated by the session cookie that sign-in set
// (HttpOnly: this code never sees a key after sign-in). Writes carry the session's CSRF token, kept in
// memory only, never in local or session storage.

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  errors?: { field: string; message: string }[];
  [extra: string]: unknown;
}

export class ApiProblem extends Error {
  constructor(public problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
  }
  get status(): number {
    return this.problem.status;
  }
}

/** Dispatched on `window` when the server no longer accepts this page's session (a 401, a stream 4401). */
export const SIGNED_OUT = "desk:signed-out";

let csrfToken: string | null = null;

export function setCsrf(token: string | null): void {
  csrfToken = token;
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path.startsWith("/") ? path : `/api/v1/${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!response.ok) {
    // The session is gone (expired, signed out in another tab, its key revoked): the page says so and
    // goes back to sign-in (main.ts) rather than going on with views that can no longer refresh.
    if (response.status === 401 && !path.startsWith("desk/session")) window.dispatchEvent(new Event(SIGNED_OUT));
    throw new ApiProblem({ status: response.status, ...(data && typeof data === "object" ? data : { detail: text }) });
  }
  return data as T;
}

export async function all<T = any>(path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page: { items: T[]; next_cursor?: string | null } = await api(
      "GET",
      cursor ? `${path}${sep}limit=500&cursor=${encodeURIComponent(cursor)}` : `${path}${sep}limit=500`,
    );
    items.push(...page.items);
    cursor = page.next_cursor ?? null;
  } while (cursor);
  return items;
}

export interface Session {
  user: { id: string; email: string; role: string };
  csrf_token: string;
  expires_at: string;
}

export async function currentSession(): Promise<Session | null> {
  try {
    const session = await api<Session>("GET", "desk/session");
    setCsrf(session.csrf_token);
    return session;
  } catch (error) {
    if (error instanceof ApiProblem && error.status === 401) return null;
    throw error;
  }
}

export async function signIn(apiKey: string): Promise<Session> {
  const session = await api<Session>("POST", "desk/session", { api_key: apiKey });
  setCsrf(session.csrf_token);
  return session;
}

export async function signOut(): Promise<void> {
  await api("DELETE", "desk/session");
  setCsrf(null);
}

/** A problem as one line: its detail, the risk limit that blocked the order, and each field error. */
export function problemText(e: unknown): string {
  if (!(e instanceof ApiProblem)) return String(e);
  const p = e.problem;
  const parts = [p.detail || p.title || `HTTP ${p.status}`];
  if (p.limit_type) parts.push(`limit ${p.limit_type} = ${p.limit_value}, order would make it ${p.would_be}`);
  // A field error that only repeats the detail (one failing field: its message is the detail) adds nothing.
  for (const f of p.errors ?? []) if (f.message !== parts[0]) parts.push(`${f.field}: ${f.message}`);
  return parts.join(" — ");
}
