// Live updates from the API's stream (/api/v1/stream, WebSocket, authenticated by the session cookie).
// It resumes with `since` after a disconnect, so the blotter misses nothing; while the stream is
// unreachable the views fall back to polling (the `connected` flag and `onStatus` listeners tell them).

import { SIGNED_OUT } from "./api";

export type Message = { type: string; [key: string]: any };
type Handler = (message: Message) => void;

export class Live {
  private ws: WebSocket | null = null;
  private handlers = new Set<Handler>();
  private statusListeners = new Set<(connected: boolean) => void>();
  private streams = new Set<string>();
  private lastSeq: Record<string, number> = {};
  private failures = 0;
  private closed = false;
  private lastMessageAt = 0;
  private watchdog: number | null = null;
  connected = false;

  on(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Called with `true` once a (re)connected stream confirms its subscriptions, `false` when it drops. */
  onStatus(listener: (connected: boolean) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  subscribe(streams: string[]): void {
    const fresh = streams.filter((s) => !this.streams.has(s));
    fresh.forEach((s) => this.streams.add(s));
    if (!this.ws) this.connect();
    else if (fresh.length && this.ws.readyState === WebSocket.OPEN) this.send(fresh);
  }

  unsubscribeAll(): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.streams.size) {
      this.ws.send(JSON.stringify({ action: "unsubscribe", streams: [...this.streams] }));
    }
    this.streams.clear();
  }

  close(): void {
    this.closed = true;
    if (this.watchdog !== null) window.clearInterval(this.watchdog);
    this.ws?.close();
  }

  private send(streams: string[]): void {
    const since = Object.keys(this.lastSeq).length ? { since: this.lastSeq } : {};
    this.ws!.send(JSON.stringify({ action: "subscribe", streams, ...since }));
  }

  private connect(): void {
    if (this.closed) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/stream`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.streams.size) this.send([...this.streams]);
    };
    ws.onmessage = (event) => {
      this.lastMessageAt = Date.now();
      const message: Message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        this.failures = 0;
        this.setConnected(true);
        for (const [account, seq] of Object.entries(message.seqs ?? {})) {
          if (this.lastSeq[account] === undefined) this.lastSeq[account] = Number(seq);
        }
      }
      if (message.type === "trade_update") {
        const last = this.lastSeq[message.account_id];
        if (last !== undefined && message.seq <= last) return;
        this.lastSeq[message.account_id] = message.seq;
      }
      this.handlers.forEach((handler) => handler(message));
    };
    ws.onclose = (event) => this.dropped(ws, event.code);
    // The server sends a heartbeat every STREAM_HEARTBEAT_SECONDS (15 s by default): a connection silent
    // for three of them is dead even if the socket has not noticed, so it is dropped and resumed, and
    // the views poll meanwhile (they do not poll while the stream is up).
    this.lastMessageAt = Date.now();
    if (this.watchdog === null) {
      this.watchdog = window.setInterval(() => {
        if (this.ws?.readyState === WebSocket.OPEN && Date.now() - this.lastMessageAt > 45_000) {
          const stale = this.ws;
          stale.close();
          this.dropped(stale, 4000);
        }
      }, 5_000);
    }
  }

  private dropped(ws: WebSocket, code: number): void {
    if (this.ws !== ws) return; // already handled (the watchdog dropped it first)
    ws.onclose = ws.onmessage = ws.onopen = null;
    this.ws = null;
    this.setConnected(false);
    if (code === 4401 && !this.closed) window.dispatchEvent(new Event(SIGNED_OUT)); // the session ended
    if (this.closed || code === 4401) return;
    this.failures += 1;
    const delay = Math.min(10_000, 200 * 2 ** Math.min(this.failures, 6)) * Math.random();
    window.setTimeout(() => this.connect(), delay);
  }

  private setConnected(connected: boolean): void {
    if (this.connected !== connected) {
      this.connected = connected;
      this.statusListeners.forEach((listener) => listener(connected));
    }
  }
}
