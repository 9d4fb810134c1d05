// React bindings for @encore-realtime/client (entry point "@encore-realtime/client/react").
// React is an optional peer dependency: only this entry point imports it.
import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import { RealtimeClient, type EventHandler, type RealtimeClientOptions } from "./client.js";
import type { ConnectionState, HealthSnapshot } from "./health.js";
import type { TypedChannel, TypedEventHandler } from "./typed.js";

const RealtimeContext = createContext<RealtimeClient | null>(null);

export interface RealtimeProviderProps {
  /** A client the app made itself (the provider then neither connects nor closes it). */
  client?: RealtimeClient;
  /** Options for a client the provider makes, connects on mount and closes on unmount. */
  options?: RealtimeClientOptions;
  children?: ReactNode;
}

/**
 * RealtimeProvider gives its subtree one RealtimeClient: the one passed as `client`, or
 * one it creates from `options` (read once, on mount).
 */
export function RealtimeProvider(props: RealtimeProviderProps) {
  const [owned] = useState(() => (props.client ? null : new RealtimeClient(props.options)));
  const client = props.client ?? owned!;
  useEffect(() => {
    if (!owned) return;
    owned.connect();
    return () => owned.close();
  }, [owned]);
  return createElement(RealtimeContext.Provider, { value: client }, props.children);
}

/** useRealtime returns the provider's client; it throws outside a RealtimeProvider. */
export function useRealtime(): RealtimeClient {
  const c = useContext(RealtimeContext);
  if (!c) throw new Error("useRealtime: no <RealtimeProvider> above this component");
  return c;
}

/**
 * useChannel subscribes to channel while the component is mounted and calls the latest
 * handler for each event. Changing the handler does not resubscribe; changing the channel
 * does. Pass null to subscribe to nothing. A typed channel (`orders(id)`) gives the
 * handler its payload type.
 */
export function useChannel<T>(channel: TypedChannel<T> | null, handler: TypedEventHandler<T>): void;
export function useChannel<T = unknown>(channel: string | null, handler: EventHandler<T>): void;
export function useChannel(channel: string | null, handler: (event: any) => void): void {
  const client = useRealtime();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    if (!channel) return;
    return client.subscribe(channel, (ev) => ref.current(ev));
  }, [client, channel]);
}

/** useConnectionHealth re-renders with every "health" snapshot of the client. */
export function useConnectionHealth(): HealthSnapshot {
  const client = useRealtime();
  return useSyncExternalStore(
    (cb) => client.on("health", cb),
    () => client.lastHealth,
    () => client.lastHealth,
  );
}

/** useConnectionState re-renders when the connection state changes. */
export function useConnectionState(): ConnectionState {
  const client = useRealtime();
  return useSyncExternalStore(
    (cb) => client.on("state", cb),
    () => client.state,
    () => client.state,
  );
}

export { RealtimeClient };
