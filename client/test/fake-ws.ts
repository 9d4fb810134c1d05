// FakeWebSocket is a scripted stand-in for the browser WebSocket, for unit tests only
// (browser tests use Chromium's real one against the real server).
import type { WebSocketLike } from "../src/socket.js";
import type { NetworkMonitor } from "../src/socket.js";

export class FakeWebSocket implements WebSocketLike {
  static instances: FakeWebSocket[] = [];
  static reset(): void {
    FakeWebSocket.instances = [];
  }
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error("no FakeWebSocket created");
    return ws;
  }

  readyState = 0;
  /** Frames the client sent, parsed. */
  sent: any[] = [];
  /** Set when the client called close(). */
  closedBy: { code?: number; reason?: string } | null = null;
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: any }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;

  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedBy = { code, reason };
    this.readyState = 3;
  }

  // ---- the server's side ----

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** welcome opens the socket and sends a welcome frame. */
  welcome(extra: Record<string, unknown> = {}): void {
    if (this.readyState === 0) this.open();
    this.receive({
      type: "welcome",
      version: 1,
      session: "sess-" + FakeWebSocket.instances.indexOf(this),
      instance: "test-1",
      heartbeatMs: 25000,
      serverTime: Date.now(),
      epoch: "E1",
      seq: 0,
      limits: {},
      ...extra,
    });
  }

  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  events(...evs: Array<{ id: string; seq: number; channel: string; data?: unknown; ts?: number }>): void {
    this.receive({ type: "events", events: evs.map((e) => ({ ts: Date.now(), ...e })) });
  }

  /** serverClose delivers a close event as if the server (or network) closed the socket. */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  sentOfType(type: string): any[] {
    return this.sent.filter((f) => f.type === type);
  }
}

/** FakeNetwork is a NetworkMonitor the test flips. */
export class FakeNetwork implements NetworkMonitor {
  private fns = new Set<(online: boolean) => void>();
  constructor(private isOnline = true) {}
  online(): boolean {
    return this.isOnline;
  }
  subscribe(fn: (online: boolean) => void): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  set(online: boolean): void {
    this.isOnline = online;
    for (const fn of [...this.fns]) fn(online);
  }
  get listeners(): number {
    return this.fns.size;
  }
}
