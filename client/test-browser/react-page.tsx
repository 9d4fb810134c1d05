// A small React page for the browser tests of src/react.tsx; bundled by the test itself.
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { RealtimeProvider, useChannel, useConnectionHealth, useConnectionState, usePresence, useRealtime } from "../src/react.js";
import type { RealtimeEvent } from "../src/index.js";

function Feed({ channel }: { channel: string }) {
  const [events, setEvents] = useState<RealtimeEvent[]>([]);
  useChannel(channel, (ev) => setEvents((list) => [...list, ev]));
  return (
    <ul data-testid={`feed-${channel}`}>
      {events.map((e) => (
        <li key={e.id} data-testid="react-event" data-id={e.id}>
          {e.id}
        </li>
      ))}
    </ul>
  );
}

function Health() {
  const h = useConnectionHealth();
  const state = useConnectionState();
  const client = useRealtime();
  if (!(window as any).reactClient) {
    (window as any).reactClient = client;
    (window as any).subscribed = [];
    client.on("subscribed", (chs) => (window as any).subscribed.push(...chs));
  }
  return (
    <p>
      <span data-testid="react-state">{state}</span> <span data-testid="react-rtt">{h.rttMs === null ? "-" : String(h.rttMs)}</span>{" "}
      <span data-testid="react-received">{h.eventsReceived}</span>
    </p>
  );
}

function Presence({ channel }: { channel: string }) {
  const p = usePresence(channel);
  return (
    <p data-testid="react-presence" data-ready={String(p.ready)}>
      {p.users} users
    </p>
  );
}

function App() {
  const [shown, setShown] = useState(true);
  return (
    <>
      <button data-testid="toggle" onClick={() => setShown((s) => !s)}>
        toggle
      </button>
      <Health />
      {shown && <Feed channel="r.one" />}
      <Feed channel="r.two" />
      <Presence channel="r.two" />
    </>
  );
}

const url = `ws://${location.host}/v2/realtime/stream`;
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <RealtimeProvider options={{ url, pingIntervalMs: 500, healthEmitMs: 100 }}>
      <App />
    </RealtimeProvider>
  </StrictMode>,
);
