// Live updates from the API's stream (/api/v1/stream, WebSocket, authenticated by the session cookie).
// It resumes with `since` after a disconnect, so the blotter misses nothing; while the stream is
// unreachable the views fall back to polling (the `connected` flag tells them).

export type Message = { type: string; [key: string]: any };
type Handler = (message: Message) => void;

export class Live {
  private ws: WebSocket | null = null;
  private handlers = new Set<Handler>();
  private streams = new Set<string>();
  private lastSeq: Record<string, number> = {};
  private failures = 0;
  private closed = false;
  connected = false;

  constructor(private onStatus: (connected: boolean) => void = () => {}) {}

  on(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
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
    ws.onclose = (event) => {
      this.ws = null;
      this.setConnected(false);
      if (this.closed || event.code === 4401) return;
      this.failures += 1;
      const delay = Math.min(10_000, 200 * 2 ** Math.min(this.failures, 6)) * Math.random();
      window.setTimeout(() => this.connect(), delay);
    };
  }

  private setConnected(connected: boolean): void {
    if (this.connected !== connected) {
      this.connected = connected;
      this.onStatus(connected);
    }
  }
}
