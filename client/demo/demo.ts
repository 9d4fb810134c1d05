// Demo page served by realtimed at "/": pick channels, publish, watch events and health.
// Built into web/demo/demo.js by `npm run build:demo` (committed; CI checks it is current).
//
// Query parameters: channels=a,b (subscribe at load), token=<subscriber token> (for a
// server with token keys; the token form sets it), key=<publisher key> (default "dev"),
// url=<stream URL>, baseMs/capMs (reconnect backoff), ping=<ms> (ping interval),
// health=<ms> (health frame interval), max=<n> (events kept on the page, default 2000),
// room=<name> (the room of the typed notes channel, default "lobby").
//
// The page is a row of control panels (<section class="panel" data-section=...> in
// .controls) above the events: a feature adds its panel there and its wiring below.
import { RealtimeClient, STATES, type HealthSnapshot, type RealtimeEvent } from "../src/index.js";
import { notes } from "./channels.gen.js";

const params = new URLSearchParams(location.search);
const num = (name: string): number | undefined => {
  const v = params.get(name);
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
};
const maxEvents = num("max") ?? 2000;
const maxLog = 200;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`demo: missing [data-testid=${id}]`);
  return el;
};

const token = params.get("token") || undefined;
const client = new RealtimeClient({
  url: params.get("url") ?? undefined,
  token,
  backoff: { baseMs: num("baseMs") ?? 1000, capMs: num("capMs") ?? 300000 },
  pingIntervalMs: num("ping") ?? 5000,
  healthIntervalMs: num("health") ?? 30000,
  healthEmitMs: 250,
});
// For debugging from the console and for the browser tests.
(window as any).realtimeDemo = { client };

let eventCount = 0;
let resyncs = 0;
const unsubscribers = new Map<string, () => void>();

function log(text: string): void {
  const li = document.createElement("li");
  li.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  const list = $("log");
  list.prepend(li);
  while (list.childElementCount > maxLog) list.lastElementChild!.remove();
}

function onEvent(ev: RealtimeEvent, text?: string): void {
  eventCount++;
  const li = document.createElement("li");
  li.dataset.testid = "event";
  li.dataset.id = ev.id;
  li.dataset.seq = String(ev.seq);
  li.dataset.channel = ev.channel;
  const cells: Array<[string, string]> = [
    ["seq", String(ev.seq)],
    ["ch", ev.channel],
    ["id", ev.id],
    ["data", text ?? (ev.type ? ev.type + " " : "") + (ev.data === undefined ? "" : JSON.stringify(ev.data))],
  ];
  for (const [cls, text] of cells) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text; // never innerHTML: event data is untrusted
    if (cls === "ch" || cls === "id") span.title = text; // cut with an ellipsis when long
    li.append(span);
  }
  const list = $("events");
  list.prepend(li);
  while (list.childElementCount > maxEvents) list.lastElementChild!.remove();
  $("event-count").textContent = String(eventCount);
}

function renderChannels(): void {
  const ul = $("channel-list");
  ul.replaceChildren();
  for (const ch of unsubscribers.keys()) {
    const li = document.createElement("li");
    li.dataset.channel = ch;
    li.append(ch);
    const b = document.createElement("button");
    b.type = "button";
    b.title = `Unsubscribe from ${ch}`;
    b.textContent = "×";
    b.dataset.testid = "unsubscribe-button";
    b.addEventListener("click", () => unsubscribe(ch));
    li.append(b);
    ul.append(li);
  }
}

function subscribe(ch: string): void {
  ch = ch.trim();
  if (!ch || unsubscribers.has(ch)) return;
  unsubscribers.set(ch, client.subscribe(ch, onEvent));
  if (!($("publish-channel") as HTMLInputElement).value) ($("publish-channel") as HTMLInputElement).value = ch;
  renderChannels();
  log(`subscribe ${ch}`);
}

function unsubscribe(ch: string): void {
  unsubscribers.get(ch)?.();
  unsubscribers.delete(ch);
  renderChannels();
  log(`unsubscribe ${ch}`);
}

const ms = (v: number | null): string => {
  if (v === null) return "-";
  const a = Math.abs(v);
  if (a >= 1000) return `${(v / 1000).toFixed(2)} s`;
  return a >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`;
};

function renderHealth(h: HealthSnapshot): void {
  const state = $("state");
  state.textContent = h.state;
  state.dataset.state = h.state;
  $("transport").textContent = h.transport;
  $("session").textContent = h.session ?? "-";
  $("instance").textContent = h.instance ?? "-";
  $("rtt").textContent = ms(h.rttMs);
  $("offset").textContent = ms(h.clockOffsetMs);
  $("latency-p50").textContent = ms(h.latencyP50Ms);
  $("latency-p99").textContent = ms(h.latencyP99Ms);
  $("events-received").textContent = String(h.eventsReceived);
  $("duplicates").textContent = String(h.duplicates);
  $("reconnects").textContent = String(h.reconnects);
  $("recoveries").textContent = String(h.recoveries);
  $("resyncs").textContent = String(resyncs);
  const c = client.cursor;
  $("cursor").textContent = c ? `${c.seq}.${c.epoch}` : "-";
  const rows = STATES.map((s) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    a.textContent = s;
    const b = document.createElement("td");
    b.textContent = `${(h.timeInStateMs[s] / 1000).toFixed(1)} s`;
    tr.append(a, b);
    return tr;
  });
  $("time-in-state").replaceChildren(...rows);
}

client.on("health", renderHealth);
client.on("state", (s, prev) => log(`state ${prev} -> ${s}`));
client.on("subscribed", (chs) => log(`subscribed ${chs.join(",")}`));
client.on("transport", (t, why) => log(`transport ${t} (${why})`));
client.on("welcome", (w) => log(`welcome session=${w.session} instance=${w.instance} seq=${w.seq} epoch=${w.epoch}`));
client.on("resync", (r) => {
  resyncs++;
  log(`resync ${r.reason} on ${r.channels.join(",")}: reload state from its source`);
});
client.on("error", (e) => log(`error ${e.kind}${e.code ? " " + e.code : ""}${e.channel ? " " + e.channel : ""}: ${e.message}`));
client.on("closed", (i) => {
  log(`closed ${i.code} ${i.reason}`);
  // 4401/4403, or a refused token: say what the page needs.
  if (i.code === 4401 || i.code === 4403 || (i.code >= 4200 && i.code < 4300)) {
    $("token-status").textContent = token
      ? `The server refused this token (${i.code} ${i.reason}): paste another one.`
      : `This server wants a token (${i.code} ${i.reason}): paste one above or open the page with ?token=.`;
  }
});

// The token form reloads the page with ?token= (the client takes its token at start).
$("token-status").textContent = token ? "Connecting with the token from the address (?token=)." : $("token-status").textContent;
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const next = new URLSearchParams(location.search);
  const value = $<HTMLInputElement>("token-input").value.trim();
  if (value) next.set("token", value);
  else next.delete("token");
  const chans = [...unsubscribers.keys()].join(",");
  if (chans) next.set("channels", chans);
  location.search = next.toString();
});

$("subscribe-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("channel-input");
  for (const ch of input.value.split(",")) subscribe(ch);
  input.value = "";
});

$("clear-events").addEventListener("click", () => {
  $("events").replaceChildren();
});

const keyInput = $<HTMLInputElement>("key-input");
keyInput.value = params.get("key") ?? "dev";

let published = 0;
$("publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("publish-result");
  const channel = $<HTMLInputElement>("publish-channel").value.trim();
  const type = $<HTMLInputElement>("publish-type").value.trim();
  const raw = $<HTMLTextAreaElement>("publish-data").value.trim();
  let data: unknown;
  try {
    data = raw === "" ? undefined : JSON.parse(raw);
  } catch (err) {
    out.textContent = `Data is not JSON: ${String(err)}`;
    return;
  }
  const id = `demo-${Date.now().toString(36)}-${++published}`;
  try {
    const res = await fetch("/v2/realtime/publish", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyInput.value}` },
      body: JSON.stringify({ channel, type: type || undefined, data, id }),
    });
    const text = await res.text();
    out.textContent = res.ok ? `Published ${id}: ${text}` : `HTTP ${res.status}: ${text}`;
  } catch (err) {
    out.textContent = `Publish failed: ${String(err)}`;
  }
});

// Without ?channels= the page starts on "public.demo": in the server's dev mode (no token
// keys) anonymous visitors may read public channels only.
for (const ch of (params.get("channels") ?? "public.demo").split(",")) subscribe(ch);

// The page's typed channel: realtime/channels.Notes, generated into channels.gen.ts
// (go generate ./realtime/channels). The handler sees a Note: the compiler checks
// ev.data.author and ev.data.text against the Go type.
const room = params.get("room") ?? "lobby";
client.subscribe(notes(room), (ev) => onEvent(ev, `${ev.data.author}: ${ev.data.text}`));
log(`subscribe ${notes(room)} (typed: Note)`);
renderHealth(client.health());
client.connect();
