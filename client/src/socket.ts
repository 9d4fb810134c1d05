/**
 * WebSocketLike is the part of the browser WebSocket the client uses. Tests inject a
 * fake through RealtimeClientOptions.WebSocket; browsers use the real one.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** WebSocketCtor builds a WebSocketLike for a URL. */
export type WebSocketCtor = new (url: string) => WebSocketLike;

/** WebSocket.OPEN. */
export const OPEN = 1;

/**
 * NetworkMonitor tells the client whether the browser thinks it is online. The default
 * reads navigator.onLine and listens to window "online"/"offline" events.
 */
export interface NetworkMonitor {
  online(): boolean;
  /** subscribe calls fn on every change and returns a function that stops it. */
  subscribe(fn: (online: boolean) => void): () => void;
}

/** browserNetwork is the NetworkMonitor of the current page (always online elsewhere). */
export function browserNetwork(): NetworkMonitor {
  const g = globalThis as any;
  return {
    online: () => (g.navigator && typeof g.navigator.onLine === "boolean" ? g.navigator.onLine : true),
    subscribe(fn) {
      if (typeof g.addEventListener !== "function") return () => {};
      const on = () => fn(true);
      const off = () => fn(false);
      g.addEventListener("online", on);
      g.addEventListener("offline", off);
      return () => {
        g.removeEventListener("online", on);
        g.removeEventListener("offline", off);
      };
    },
  };
}
