// src/backoff.ts
var DEFAULT_BACKOFF = {
  baseMs: 1e3,
  capMs: 5 * 60 * 1e3,
  factor: 2
};
var Backoff = class {
  constructor(opts = {}, random = Math.random) {
    this.random = random;
    this.attempt = 0;
    this.baseMs = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
    this.capMs = opts.capMs ?? DEFAULT_BACKOFF.capMs;
    this.factor = opts.factor ?? DEFAULT_BACKOFF.factor;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs) || !(this.factor >= 1)) {
      throw new RangeError(
        `backoff: need baseMs > 0, capMs >= baseMs, factor >= 1 (got ${this.baseMs}, ${this.capMs}, ${this.factor})`
      );
    }
  }
  /** ceiling returns the upper bound of the delay for attempt n (0-based). */
  ceiling(n) {
    const limit = Math.log(this.capMs / this.baseMs) / Math.log(this.factor);
    if (this.factor === 1 || n < limit) return Math.min(this.capMs, this.baseMs * this.factor ** n);
    return this.capMs;
  }
  /** next returns the delay before the next attempt and counts the attempt. */
  next() {
    const r = this.random();
    const u = r >= 0 && r < 1 ? r : 0;
    return Math.floor(u * this.ceiling(this.attempt++));
  }
  /** attempts is the number of delays handed out since the last reset. */
  get attempts() {
    return this.attempt;
  }
  /** reset starts the sequence again (after a connection proved stable). */
  reset() {
    this.attempt = 0;
  }
};

// src/codes.gen.ts
var CloseCode = {
  Normal: 1e3,
  GoingAway: 1001,
  /** a text frame that is not valid UTF-8 (RFC 6455); do not reconnect */
  BadData: 1007,
  TooBig: 1009,
  Internal: 1011,
  Abnormal: 1006,
  /** generic: reconnect with backoff */
  Reconnect: 4e3,
  /** no pong/traffic within the heartbeat timeout */
  Heartbeat: 4001,
  /** slow consumer: queue overflowed; resume by cursor after retry */
  Slow: 4100,
  /** server draining; reconnect (elsewhere) after retry */
  Shutdown: 4101,
  /** too many connects or messages; retry after */
  RateLimited: 4102,
  /** instance at capacity or dependency down; retry after */
  Overloaded: 4103,
  /** per-user connection cap reached; retry after */
  TooMany: 4104,
  /** queued-bytes budget exceeded, this connection held the most; resume by cursor after retry */
  QueueBudget: 4105,
  /** token expired; refresh it, then reconnect */
  TokenExpired: 4200,
  /** streaming disabled for this user; long-poll, probe after retry */
  UsePoll: 4300,
  /** protocol violation the client cannot fix by retrying */
  BadRequest: 4400,
  /** no or invalid credentials */
  Unauthorized: 4401,
  /** not allowed (origin, ...) */
  Forbidden: 4403
};
var DEFAULT_CLOSE_ACTION = "backoff";
var CLOSE_ACTIONS = [
  [1e3, 1e3, "stop"],
  [1002, 1003, "stop"],
  [1007, 1009, "stop"],
  [4100, 4199, "retry-after"],
  [4200, 4299, "refresh-token"],
  [4300, 4399, "use-poll"],
  [4400, 4999, "stop"]
];

// src/codes.ts
function actionFor(code) {
  for (const [first, last, action] of CLOSE_ACTIONS) {
    if (code < first) break;
    if (code <= last) return action;
  }
  return DEFAULT_CLOSE_ACTION;
}
function retryHint(reason) {
  if (!reason) return 0;
  const i = reason.lastIndexOf("retry=");
  if (i < 0) return 0;
  let s = reason.slice(i + "retry=".length);
  const j = s.indexOf(" ");
  if (j >= 0) s = s.slice(0, j);
  if (!/^[+]?\d+$/.test(s)) return 0;
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}
function httpAction(status) {
  if (status === 401) return "refresh-token";
  if (status === 404 || status === 405 || status === 501) return "unsupported";
  if (status === 408 || status === 425) return "backoff";
  if (status === 429 || status === 503) return "retry-after";
  if (status >= 400 && status < 500) return "stop";
  return "backoff";
}

// src/emitter.ts
var Emitter = class {
  constructor(onListenerError = reportError) {
    this.onListenerError = onListenerError;
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** on adds a listener and returns a function that removes it. */
  on(name, fn) {
    let set = this.listeners.get(name);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(name, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }
  emit(name, ...args) {
    const set = this.listeners.get(name);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
  listenerCount(name) {
    return this.listeners.get(name)?.size ?? 0;
  }
};
function reportError(err) {
  setTimeout(() => {
    throw err;
  }, 0);
}

// src/state.ts
var STATES = [
  "idle",
  "connecting",
  "open",
  "reconnecting",
  "polling",
  "offline",
  "closed"
];
var EVENT_TARGET = {
  connect: "connecting",
  welcome: "open",
  retry: "reconnecting",
  poll: "polling",
  offline: "offline",
  stop: "closed"
};
var TRANSITIONS = {
  // Created; connect() not called yet. A URL that cannot work stops at once.
  idle: { connect: "connecting", offline: "offline", stop: "closed" },
  // reconnect() while connecting starts a new attempt.
  connecting: {
    connect: "connecting",
    welcome: "open",
    retry: "reconnecting",
    poll: "polling",
    offline: "offline",
    stop: "closed"
  },
  open: { connect: "connecting", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // The timer (or a refreshed token) starts the next attempt, or polling again; a failed
  // token refresh waits again.
  reconnecting: { connect: "connecting", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // A probe's welcome moves back to the stream; a poll refused for a token waits in reconnecting.
  polling: { welcome: "open", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // Back online: the transport of the current mode starts; still offline: nothing.
  offline: { connect: "connecting", poll: "polling", offline: "offline", stop: "closed" },
  // connect() again; in poll mode it polls, offline it waits. A bad URL stays closed.
  closed: { connect: "connecting", poll: "polling", offline: "offline", stop: "closed" }
};
function nextState(state, ev) {
  return TRANSITIONS[state][ev];
}
var IllegalTransitionError = class extends Error {
  constructor(state, event) {
    super(`RealtimeClient: illegal transition: ${event} in state ${state}`);
    this.state = state;
    this.event = event;
    this.name = "IllegalTransitionError";
  }
};
function isDevelopment() {
  try {
    return true;
  } catch {
    return false;
  }
}
var StateMachine = class {
  constructor(strict = isDevelopment(), onIllegal = (err) => console.error(err)) {
    this.strict = strict;
    this.onIllegal = onIllegal;
    this.current = "idle";
  }
  get state() {
    return this.current;
  }
  /** fire applies ev and returns the state before it (equal to state when nothing changed). */
  fire(ev) {
    const prev = this.current;
    let next = nextState(prev, ev);
    if (next === void 0) {
      const err = new IllegalTransitionError(prev, ev);
      if (this.strict) throw err;
      this.onIllegal(err);
      next = EVENT_TARGET[ev];
    }
    this.current = next;
    return prev;
  }
};

// src/health.ts
var HealthMonitor = class {
  constructor(now, latencyWindow = 512, rttWindow = 8) {
    this.now = now;
    this.rttWindow = rttWindow;
    this.state = "idle";
    this.transport = "stream";
    this.rtt = null;
    this.rttSamples = [];
    this.latencyCount = 0;
    // samples written in total; ring index = count % length
    this.reconnects = 0;
    this.recoveries = 0;
    this.notRecovered = 0;
    this.eventsReceived = 0;
    this.duplicates = 0;
    this.session = null;
    this.instance = null;
    this.lastMessageAt = null;
    this.stateSince = now();
    this.latencies = new Float64Array(Math.max(1, latencyWindow));
    this.timeIn = Object.fromEntries(STATES.map((s) => [s, 0]));
  }
  setState(s) {
    const t = this.now();
    this.timeIn[this.state] += Math.max(0, t - this.stateSince);
    this.state = s;
    this.stateSince = t;
  }
  setTransport(t) {
    this.transport = t;
  }
  /**
   * pong records a ping answered: sentAt and receivedAt are local clock, serverTime the
   * server's clock when it answered. offset = serverTime - (sentAt + rtt/2).
   */
  pong(sentAt, receivedAt, serverTime) {
    const rtt = Math.max(0, receivedAt - sentAt);
    this.rtt = rtt;
    if (typeof serverTime === "number" && serverTime > 0) {
      this.rttSamples.push({ rtt, offset: serverTime - (sentAt + rtt / 2) });
      if (this.rttSamples.length > this.rttWindow) this.rttSamples.shift();
    }
  }
  /** clockOffset is the offset of the lowest-RTT sample in the window (least queuing error). */
  clockOffset() {
    let best = null;
    for (const s of this.rttSamples) if (!best || s.rtt < best.rtt) best = s;
    return best ? best.offset : null;
  }
  /** latency records the publish-to-receive latency of one live event. */
  latency(publishTs, receivedAt) {
    const off = this.clockOffset() ?? 0;
    const l = Math.max(0, receivedAt + off - publishTs);
    this.latencies[this.latencyCount % this.latencies.length] = l;
    this.latencyCount++;
  }
  percentiles() {
    const n = Math.min(this.latencyCount, this.latencies.length);
    if (n === 0) return { p50: null, p99: null, n };
    const sorted = Array.from(this.latencies.subarray(0, n)).sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
    return { p50: at(0.5), p99: at(0.99), n };
  }
  snapshot() {
    const t = this.now();
    const timeInStateMs = { ...this.timeIn };
    timeInStateMs[this.state] += Math.max(0, t - this.stateSince);
    const p = this.percentiles();
    let minRtt = null;
    for (const s of this.rttSamples) if (minRtt === null || s.rtt < minRtt) minRtt = s.rtt;
    return {
      state: this.state,
      transport: this.transport,
      rttMs: this.rtt,
      minRttMs: minRtt,
      clockOffsetMs: this.clockOffset(),
      latencyP50Ms: p.p50,
      latencyP99Ms: p.p99,
      latencySamples: p.n,
      reconnects: this.reconnects,
      recoveries: this.recoveries,
      notRecovered: this.notRecovered,
      eventsReceived: this.eventsReceived,
      duplicates: this.duplicates,
      timeInStateMs,
      stateSince: this.stateSince,
      session: this.session,
      instance: this.instance,
      lastMessageAt: this.lastMessageAt
    };
  }
  /** report is the body of the `health` frame sent to the server. */
  report() {
    const s = this.snapshot();
    return {
      rttMs: s.rttMs ?? 0,
      latencyP50Ms: s.latencyP50Ms ?? 0,
      latencyP99Ms: s.latencyP99Ms ?? 0,
      clockOffsetMs: s.clockOffsetMs ?? 0,
      reconnects: s.reconnects,
      recoveries: s.recoveries,
      eventsReceived: s.eventsReceived,
      duplicates: s.duplicates,
      transport: s.transport
    };
  }
};

// src/timer.ts
var Timer = class {
  constructor() {
    this.id = null;
  }
  /** set runs fn after ms (at least 0), cancelling the pending callback if any. */
  set(ms2, fn) {
    this.clear();
    this.id = setTimeout(() => {
      this.id = null;
      fn();
    }, Math.max(0, ms2));
  }
  /** clear cancels the pending callback; a no-op when none is pending. */
  clear() {
    if (this.id !== null) {
      clearTimeout(this.id);
      this.id = null;
    }
  }
  /** armed reports whether a callback is pending. */
  get armed() {
    return this.id !== null;
  }
};

// src/urls.ts
function defaultStreamUrl() {
  const loc = globalThis.location;
  if (!loc || !loc.host) throw new Error("RealtimeClient: options.url is required outside a page");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/v2/realtime/stream`;
}
function withQuery(url, params2) {
  if (params2.length === 0) return url;
  return url + (url.includes("?") ? "&" : "?") + params2.join("&");
}
function streamUrl(url, token2) {
  const base = url ?? defaultStreamUrl();
  return token2 ? withQuery(base, ["token=" + encodeURIComponent(token2)]) : base;
}
function pollBaseUrl(url, pollUrl2) {
  if (pollUrl2) return pollUrl2;
  const u = url ?? defaultStreamUrl();
  return u.replace(/^ws(s?):/, "http$1:").replace(/\/stream(\?|$)/, "/poll$1");
}

// src/poll.ts
function pollUrl(q) {
  const params2 = [`channels=${q.channels.map(encodeURIComponent).join(",")}`];
  if (q.cursor) params2.push(`cursor=${q.cursor}`);
  if (q.token) params2.push(`token=${encodeURIComponent(q.token)}`);
  return withQuery(q.url, params2);
}
function retryAfterMs(res, body) {
  if (body && typeof body.retryMs === "number" && body.retryMs > 0) return body.retryMs;
  const h = res.headers?.get?.("Retry-After");
  if (h && /^\d+$/.test(h.trim())) return Number(h.trim()) * 1e3;
  return 0;
}
var PollTransport = class {
  constructor(opts) {
    this.opts = opts;
    this.req = null;
    this.next = new Timer();
  }
  /** available reports whether there is a fetch implementation to poll with. */
  get available() {
    return Boolean(this.opts.fetch ?? globalThis.fetch);
  }
  /** inFlight reports whether a request is waiting for its answer. */
  get inFlight() {
    return this.req !== null;
  }
  /**
   * request starts a poll for q, cancelling the one in flight, and calls done once with
   * its result unless it is cancelled first. If done throws on an answer, done is called
   * again with that error as a failed result.
   */
  request(q, done) {
    const f = this.opts.fetch ?? globalThis.fetch;
    this.cancel();
    const url = pollUrl(q);
    const req = { ctl: new AbortController(), cancelled: false };
    this.req = req;
    const started = this.opts.now();
    const timeout = setTimeout(() => req.ctl.abort(), this.opts.timeoutMs);
    const live = () => !req.cancelled;
    Promise.resolve().then(() => f(url, { signal: req.ctl.signal, credentials: "same-origin", headers: { Accept: "application/json" } })).then(async (res) => {
      if (!live()) return;
      if (!res.ok) {
        let body2 = null;
        try {
          body2 = await res.json();
        } catch {
        }
        if (!live()) return;
        return done({ kind: "refused", status: res.status, hintMs: retryAfterMs(res, body2) });
      }
      const body = await res.json();
      if (!live()) return;
      done({ kind: "answer", body, channels: q.channels, started });
    }).catch((error) => {
      if (!live()) return;
      done({ kind: "failed", error });
    }).finally(() => {
      clearTimeout(timeout);
      if (this.req === req) this.req = null;
    });
  }
  /** after runs fn (the next poll) after ms, replacing a pending one. */
  after(ms2, fn) {
    this.next.set(ms2, fn);
  }
  /** stop cancels the request in flight and the pending next poll. */
  stop() {
    this.cancel();
    this.next.clear();
  }
  cancel() {
    if (!this.req) return;
    this.req.cancelled = true;
    this.req.ctl.abort();
    this.req = null;
  }
};

// src/probe.ts
var ProbeSchedule = class {
  constructor(opts, onDue) {
    this.opts = opts;
    this.onDue = onDue;
    this.why = "server";
    this.failures = 0;
    this.dueAt = 0;
    this.timer = new Timer();
  }
  /** intervalMs is the wait before a probe when nothing else says when. */
  get intervalMs() {
    return this.opts.intervalMs;
  }
  get cause() {
    return this.why;
  }
  /** followsServer reports whether the server's transport advice applies (it made the client poll). */
  get followsServer() {
    return this.why === "server";
  }
  /** armed reports whether a probe is scheduled. */
  get armed() {
    return this.timer.armed;
  }
  /**
   * schedule arranges a probe in ms. With earliestOnly, an already scheduled earlier
   * probe is kept: a hint repeated in every poll answer cannot postpone it forever.
   */
  schedule(ms2, earliestOnly = false) {
    const due = this.opts.now() + Math.max(0, ms2);
    if (this.timer.armed && earliestOnly && this.dueAt <= due) return;
    this.dueAt = due;
    this.timer.set(ms2, this.onDue);
  }
  /** clear cancels the scheduled probe. */
  clear() {
    this.timer.clear();
  }
  /** begin records why polling starts; the server's reasons forget earlier failed probes. */
  begin(cause) {
    this.why = cause;
    if (cause === "server") this.failures = 0;
  }
  /** refused records a probe the server refused (close 43xx): the server decides again. */
  refused() {
    this.why = "server";
  }
  /** failed records a failed probe and returns the wait before the next one. */
  failed() {
    this.why = "failure";
    this.failures++;
    return Math.min(this.opts.maxMs, this.opts.intervalMs * 2 ** Math.min(this.failures, 20));
  }
  /** welcomed records that the stream works: the next switch starts afresh. */
  welcomed() {
    this.why = "server";
    this.failures = 0;
  }
};

// src/socket.ts
var OPEN = 1;
function browserNetwork() {
  const g = globalThis;
  return {
    online: () => g.navigator && typeof g.navigator.onLine === "boolean" ? g.navigator.onLine : true,
    subscribe(fn) {
      if (typeof g.addEventListener !== "function") return () => {
      };
      const on = () => fn(true);
      const off = () => fn(false);
      g.addEventListener("online", on);
      g.addEventListener("offline", off);
      return () => {
        g.removeEventListener("online", on);
        g.removeEventListener("offline", off);
      };
    }
  };
}

// src/stream.ts
var StreamOpenError = class extends Error {
  constructor(cause) {
    super(String(cause));
    this.cause = cause;
    this.name = "StreamOpenError";
  }
};
var StreamConn = class {
  constructor(ws, openedAt, probe) {
    this.ws = ws;
    this.openedAt = openedAt;
    this.probe = probe;
    /** The welcome frame; null until the server sent it. */
    this.welcome = null;
    /** Local time of the welcome (0 before). */
    this.welcomedAt = 0;
    /** Timeouts and intervals of this connection, cleared when it is retired. */
    this.timers = [];
    this.deadTimer = null;
  }
  /** probing is true for a probe not welcomed yet: its close keeps the client polling. */
  get probing() {
    return this.probe && this.welcome === null;
  }
};
var StreamTransport = class {
  constructor(opts, host) {
    this.opts = opts;
    this.host = host;
    this.conn = null;
  }
  /** current is the connection in use (attempt, probe or welcomed), or null. */
  get current() {
    return this.conn;
  }
  /**
   * open starts an attempt to url() and makes it current (retiring a current one). It throws StreamOpenError if
   * the WebSocket constructor (or url) throws, and Error if there is no WebSocket at all.
   */
  open(url, probe) {
    const Ctor = this.opts.WebSocket ?? globalThis.WebSocket;
    if (!Ctor) throw new Error("RealtimeClient: no WebSocket implementation (pass options.WebSocket)");
    let ws;
    try {
      ws = new Ctor(url());
    } catch (err) {
      throw new StreamOpenError(err);
    }
    if (this.conn) this.retire(this.conn, CloseCode.Normal, "replaced");
    const conn = new StreamConn(ws, this.opts.now(), probe);
    this.conn = conn;
    ws.onmessage = (ev) => this.onMessage(conn, ev.data);
    ws.onclose = (ev) => this.onClose(conn, ev.code, ev.reason);
    ws.onerror = () => {
    };
    conn.timers.push(
      setTimeout(() => {
        if (this.conn === conn && !conn.welcome) this.lost(conn, CloseCode.Reconnect, "connect timeout");
      }, this.opts.connectTimeoutMs)
    );
    return conn;
  }
  /**
   * send writes frame on the current connection if it is welcomed and open; it reports
   * whether the frame went out.
   */
  send(frame) {
    const conn = this.conn;
    if (!conn || !conn.welcome || conn.ws.readyState !== OPEN) return false;
    try {
      conn.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }
  /** retire closes the current connection, if any; its events are ignored from now on. */
  retireCurrent(code, reason) {
    if (this.conn) this.retire(this.conn, code, reason);
  }
  /** retire detaches conn's handlers and closes it; its close event is then ignored. */
  retire(conn, code, reason) {
    for (const t of conn.timers) clearTimeout(t);
    conn.timers = [];
    if (conn.deadTimer !== null) clearTimeout(conn.deadTimer);
    conn.deadTimer = null;
    conn.ws.onmessage = null;
    conn.ws.onclose = null;
    conn.ws.onopen = null;
    conn.ws.onerror = null;
    if (conn.ws.readyState < 2) {
      const c = code === 1e3 || code >= 3e3 && code <= 4999 ? code : 1e3;
      try {
        conn.ws.close(c, reason.slice(0, 60));
      } catch {
      }
    }
    if (this.conn === conn) {
      this.conn = null;
      this.host.detached(conn);
    }
  }
  /** lost ends conn locally (dead or stuck connection) and reports it like a close. */
  lost(conn, code, reason) {
    this.retire(conn, 4e3, reason);
    this.host.closed(conn, code, reason);
  }
  onClose(conn, code, reason) {
    if (this.conn !== conn) return;
    this.retire(conn, code, reason);
    this.host.closed(conn, code, reason);
  }
  onMessage(conn, data) {
    if (this.conn !== conn) return;
    this.host.traffic(this.opts.now());
    this.armDeadTimer(conn);
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this.host.error({ kind: "protocol", message: "frame is not JSON" });
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (!conn.welcome && frame.type !== "welcome") {
      this.host.error({ kind: "protocol", message: `frame ${frame.type} before welcome` });
      return;
    }
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(conn, frame);
      case "ping":
        this.send({ type: "pong", ts: frame.ts });
        return this.host.frame(conn, frame);
      case "pong":
        if (typeof frame.ts === "number") this.host.pong(frame.ts, this.opts.now(), frame.serverTime);
        return;
      default:
        return this.host.frame(conn, frame);
    }
  }
  armDeadTimer(conn) {
    const hb = conn.welcome?.heartbeatMs ?? 0;
    if (hb <= 0) return;
    if (conn.deadTimer !== null) clearTimeout(conn.deadTimer);
    conn.deadTimer = setTimeout(() => {
      if (this.conn === conn) this.lost(conn, CloseCode.Heartbeat, "no frame for two heartbeat intervals");
    }, 2 * hb);
  }
  onWelcome(conn, w) {
    if (conn.welcome) return;
    conn.welcome = w;
    conn.welcomedAt = this.opts.now();
    for (const t of conn.timers) clearTimeout(t);
    conn.timers = [];
    this.armDeadTimer(conn);
    this.host.welcome(conn, w);
    if (this.conn !== conn) return;
    this.ping();
    const pingEvery = this.opts.pingIntervalMs;
    if (pingEvery > 0) conn.timers.push(setInterval(() => this.ping(), pingEvery));
    const healthEvery = this.opts.healthIntervalMs;
    if (healthEvery > 0) {
      const report = () => this.send({ type: "health", health: this.host.healthReport() });
      conn.timers.push(setTimeout(report, Math.min(Math.max(0, this.opts.healthFirstMs), healthEvery)));
      conn.timers.push(setInterval(report, healthEvery));
    }
  }
  ping() {
    this.send({ type: "ping", ts: this.opts.now() });
  }
};

// src/cursor.ts
var CursorTracker = class {
  constructor() {
    this.cur = null;
  }
  /** value is a copy of the cursor; null before the client has a position. */
  get value() {
    return this.cur ? { ...this.cur } : null;
  }
  /** has reports whether the client has a position yet. */
  get has() {
    return this.cur !== null;
  }
  /**
   * observe records a processed event (delivered or dropped as a duplicate). Without a
   * position yet, the cursor starts at this event when epoch is known (a welcomed stream
   * connection), and stays unset otherwise.
   */
  observe(seq, epoch) {
    if (this.cur) {
      if (seq > this.cur.seq) this.cur.seq = seq;
    } else if (epoch !== null) {
      this.cur = { seq, epoch };
    }
  }
  /**
   * baseline starts a fresh client at the head announced by welcome, so that every event
   * published after the socket opened reaches it.
   */
  baseline(w) {
    this.cur = { seq: w.seq ?? 0, epoch: w.epoch ?? "" };
    return { ...this.cur };
  }
  /**
   * notRecovered applies an answer recovered:false: the position restarts at the head
   * headSeq of epoch when the epoch changed or the cursor was ahead, else it keeps the
   * higher seq. It returns the epoch the client continues with.
   */
  notRecovered(r, epoch, headSeq) {
    const reason = r.reason ?? "not_recovered";
    const old = this.cur;
    const reset = !old || reason === "epoch_mismatch" || reason === "cursor_ahead" || epoch !== "" && old.epoch !== epoch;
    this.cur = { seq: reset ? headSeq : Math.max(old.seq, headSeq), epoch: epoch || old?.epoch || "" };
    return this.cur.epoch;
  }
  /**
   * fromPing takes the head {seq, epoch} of a server ping (docs/protocol.md "Fresh cursors on
   * quiet channels"): forwards in the cursor's epoch, or as the first position when the
   * client has none and epoch is its connection's (connEpoch). The caller checks that the
   * connection's first subscribe was answered. It reports whether the cursor moved.
   */
  fromPing(seq, epoch, connEpoch) {
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq <= 0 || typeof epoch !== "string" || epoch === "") return false;
    if (this.cur) {
      if (epoch !== this.cur.epoch || seq <= this.cur.seq) return false;
      this.cur.seq = seq;
      return true;
    }
    if (epoch !== connEpoch) return false;
    this.cur = { seq, epoch };
    return true;
  }
  /** fromPoll takes the cursor of a poll answer: later in the epoch, or of another epoch. */
  fromPoll(c) {
    if (!c || typeof c.seq !== "number") return;
    if (!this.cur || c.epoch !== this.cur.epoch || c.seq > this.cur.seq) {
      this.cur = { seq: c.seq, epoch: String(c.epoch ?? "") };
    }
  }
  /** query is the cursor as the poll endpoint's `cursor` parameter, `<seq>.<epoch>`; null without one. */
  query() {
    return this.cur ? `${this.cur.seq}.${encodeURIComponent(this.cur.epoch)}` : null;
  }
};

// src/dedup.ts
var Dedup = class {
  constructor(opts = {}, now = Date.now) {
    this.now = now;
    this.seenAt = /* @__PURE__ */ new Map();
    /** evicted counts IDs forgotten because of maxSize (not expiry). */
    this.evicted = 0;
    this.ttlMs = opts.ttlMs ?? 10 * 60 * 1e3;
    this.maxSize = opts.maxSize ?? 1e4;
    if (!(this.ttlMs > 0) || !(this.maxSize >= 1)) {
      throw new RangeError(`dedup: need ttlMs > 0 and maxSize >= 1 (got ${this.ttlMs}, ${this.maxSize})`);
    }
  }
  /**
   * check records id and reports whether it was already seen (a duplicate) within the
   * TTL. A duplicate does not refresh the ID's expiry: insertion order stays time order.
   */
  check(id) {
    const t = this.now();
    this.expire(t);
    const at = this.seenAt.get(id);
    if (at !== void 0) return true;
    this.seenAt.set(id, t);
    while (this.seenAt.size > this.maxSize) {
      const oldest = this.seenAt.keys().next().value;
      this.seenAt.delete(oldest);
      this.evicted++;
    }
    return false;
  }
  /** has reports whether id is remembered (without recording it). */
  has(id) {
    this.expire(this.now());
    return this.seenAt.has(id);
  }
  /** size is the number of IDs remembered now. */
  get size() {
    this.expire(this.now());
    return this.seenAt.size;
  }
  clear() {
    this.seenAt.clear();
  }
  expire(t) {
    for (const [id, at] of this.seenAt) {
      if (t - at < this.ttlMs) break;
      this.seenAt.delete(id);
    }
  }
};

// src/subscriptions.ts
var RETRY_CODES = /* @__PURE__ */ new Set(["replay_in_progress", "rate_limited"]);
var MAX_PENDING = 64;
var subscribeIds = 0;
var Subscriptions = class {
  constructor(opts, monitor, emitter, host) {
    this.opts = opts;
    this.monitor = monitor;
    this.emitter = emitter;
    this.host = host;
    /** cursor is the resume position (advanced by every processed event). */
    this.cursor = new CursorTracker();
    this.handlers = /* @__PURE__ */ new Map();
    /** Replayed events have seq <= replayTo: not counted in latency. */
    this.replayTo = 0;
    this.session = null;
    this.dedup = new Dedup(opts.dedup, opts.now);
  }
  /** channels lists the channels with at least one handler, in subscription order. */
  get channels() {
    return [...this.handlers.keys()];
  }
  /** add registers handler for channel; it reports whether the channel is new. */
  add(channel, handler) {
    let set = this.handlers.get(channel);
    const fresh = !set;
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.handlers.set(channel, set);
    }
    set.add(handler);
    return fresh;
  }
  /** remove drops handler; it reports whether the channel lost its last handler. */
  remove(channel, handler) {
    const s = this.handlers.get(channel);
    if (!s) return false;
    s.delete(handler);
    if (s.size > 0) return false;
    this.handlers.delete(channel);
    return true;
  }
  // ---- the current stream connection ----
  /** begin starts the session of a welcomed connection: nothing is subscribed on it yet. */
  begin(welcome, welcomedAt) {
    this.end();
    this.session = {
      welcome,
      welcomedAt,
      channels: /* @__PURE__ */ new Set(),
      subscribed: false,
      cursorKind: null,
      firstChannels: [],
      firstAnswered: false,
      epoch: welcome.epoch ?? "",
      pending: /* @__PURE__ */ new Map(),
      retry: null
    };
  }
  /** end forgets the connection's session (it was retired). */
  end() {
    if (this.session?.retry) clearTimeout(this.session.retry);
    this.session = null;
  }
  /**
   * flush makes the connection's channel set match the handlers. The first subscribe of
   * a connection carries the cursor and every channel (protocol "Recovery").
   */
  flush() {
    const conn = this.session;
    if (!conn || !this.host.open()) return;
    const add = this.channels.filter((c) => !conn.channels.has(c));
    const drop = [...conn.channels].filter((c) => !this.handlers.has(c));
    if (drop.length > 0 && this.host.send({ type: "unsubscribe", channels: drop })) {
      for (const c of drop) conn.channels.delete(c);
    }
    if (add.length === 0) return;
    const frame = {
      type: "subscribe",
      id: "s" + ++subscribeIds,
      channels: add
    };
    if (!conn.subscribed) {
      const cur = this.cursor.value;
      if (cur) {
        frame.cursor = cur;
        conn.cursorKind = "resume";
      } else if (this.opts.now() - conn.welcomedAt <= this.opts.baselineWindowMs) {
        frame.cursor = this.cursor.baseline(conn.welcome);
        conn.cursorKind = "baseline";
      }
      conn.firstChannels = add;
    }
    if (this.host.send(frame)) {
      conn.subscribed = true;
      for (const c of add) conn.channels.add(c);
      conn.pending.set(frame.id, add);
      if (conn.pending.size > MAX_PENDING) conn.pending.delete(conn.pending.keys().next().value);
    }
  }
  /**
   * retryLater forgets channels the server refused for now (a replay in progress, rate
   * limited) and subscribes them again after a short pause on the same connection.
   */
  retryLater(conn, channels) {
    for (const c of channels) conn.channels.delete(c);
    if (conn.retry !== null) return;
    conn.retry = setTimeout(() => {
      conn.retry = null;
      if (this.session === conn) this.flush();
    }, 250 + Math.floor(this.opts.random() * 250));
  }
  /** onSubscribed reads the answer to a subscribe or unsubscribe frame. */
  onSubscribed(f) {
    const conn = this.session;
    if (!conn) return;
    if (f.id) conn.pending.delete(f.id);
    if (f.op !== "unsubscribe" && !conn.firstAnswered) {
      conn.firstAnswered = true;
      if (f.epoch) conn.epoch = f.epoch;
    }
    const later = [];
    for (const r of f.results ?? []) {
      if (!r.ok && r.code !== void 0 && RETRY_CODES.has(r.code)) {
        later.push(r.channel);
      } else if (!r.ok) {
        conn.channels.delete(r.channel);
        this.emitter.emit("error", {
          kind: "channel",
          channel: r.channel,
          code: r.code,
          message: r.error ?? r.code ?? "refused"
        });
      }
    }
    if (later.length > 0 && f.op !== "unsubscribe") this.retryLater(conn, later);
    if (f.op !== "unsubscribe") {
      const ok = (f.results ?? []).filter((r) => r.ok).map((r) => r.channel);
      if (ok.length > 0) this.emitter.emit("subscribed", ok);
    }
    if (f.recovery) {
      const epoch = f.epoch ?? conn.welcome.epoch ?? "";
      this.onRecovery(f.recovery, epoch, conn.welcome.seq ?? 0, conn.firstChannels, conn.cursorKind === "resume");
    }
  }
  /**
   * onPing reads a server `ping`: its head {seq, epoch}, if any, becomes the cursor when the
   * answer to this connection's first subscribe has arrived (before it, the ping may precede
   * the events that subscribe recovers), forwards only and in the cursor's epoch
   * (docs/protocol.md "Fresh cursors on quiet channels"). So a client on quiet channels keeps
   * a fresh cursor while other channels move the bus past retention. Pings of older servers
   * carry no head and change nothing.
   */
  onPing(f) {
    const conn = this.session;
    if (!conn || !conn.firstAnswered) return;
    this.cursor.fromPing(f.seq, f.epoch, conn.epoch);
  }
  /** onErrorFrame reads an `error` frame; one answering a pending subscribe unsubscribes its channels. */
  onErrorFrame(f) {
    const conn = this.session;
    const chans = conn && f.id ? conn.pending.get(f.id) : void 0;
    if (conn && chans) {
      conn.pending.delete(f.id);
      if (RETRY_CODES.has(f.code)) return this.retryLater(conn, chans);
      for (const c of chans) conn.channels.delete(c);
    }
    this.emitter.emit("error", { kind: "frame", code: f.code, message: f.message ?? f.code });
  }
  /** onRecovery handles the recovery answer of a stream resume or of a poll. */
  onRecovery(r, epoch, headSeq, channels, counted) {
    if (r.recovered) {
      if (counted) this.monitor.recoveries++;
      this.replayTo = Math.max(this.replayTo, r.to ?? 0);
      this.host.healthChanged();
      return;
    }
    this.monitor.notRecovered++;
    const reason = r.reason ?? "not_recovered";
    const continued = this.cursor.notRecovered(r, epoch, headSeq);
    this.emitter.emit("resync", { reason, channels: [...channels], epoch: continued });
    this.host.healthChanged();
  }
  // ---- delivery ----
  /** onEvents delivers an `events` frame of the stream, received at local time at; false if it has no events list. */
  onEvents(f, at) {
    if (!Array.isArray(f.events)) return false;
    for (const ev of f.events) this.deliver(ev, at);
    return true;
  }
  /**
   * applyPoll takes a poll answer for channels: its recovery, its events, then its
   * cursor (which may be beyond the last event).
   */
  applyPoll(body, channels, receivedAt) {
    if (body.recovery) {
      this.onRecovery(body.recovery, body.cursor?.epoch ?? this.cursor.value?.epoch ?? "", body.cursor?.seq ?? 0, channels, true);
    }
    const events = Array.isArray(body.events) ? body.events : [];
    for (const ev of events) this.deliver(ev, receivedAt);
    this.cursor.fromPoll(body.cursor);
    return events.length;
  }
  /** deliver advances the cursor, drops duplicates and calls the channel's handlers. */
  deliver(ev, receivedAt) {
    if (!ev || typeof ev.id !== "string" || typeof ev.seq !== "number" || typeof ev.channel !== "string") {
      this.emitter.emit("error", { kind: "protocol", message: "malformed event" });
      return;
    }
    this.cursor.observe(ev.seq, this.session ? this.session.welcome.epoch ?? "" : null);
    if (this.dedup.check(ev.id)) {
      this.monitor.duplicates++;
      return;
    }
    this.monitor.eventsReceived++;
    if (ev.seq > this.replayTo && typeof ev.ts === "number" && ev.ts > 0) this.monitor.latency(ev.ts, receivedAt);
    const set = this.handlers.get(ev.channel);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(ev);
      } catch (err) {
        this.emitter.emit("error", { kind: "handler", channel: ev.channel, message: String(err), cause: err });
      }
    }
  }
};

// src/client.ts
var RealtimeClient = class {
  constructor(opts = {}) {
    this.emitter = new Emitter();
    // Connection decisions.
    /** The transport in use; "poll" also while a probe connects. Changed by setTransport (enterPoll re-asserts "poll"). */
    this.mode = "stream";
    this.everWelcomed = false;
    /** Consecutive stream attempts that never reached welcome (the breaker counts them). */
    this.failures = 0;
    /** The next reconnect, or the retry of a failed token refresh. */
    this.retry = new Timer();
    /** The refreshToken call in flight; cancelled by teardown. */
    this.refreshing = null;
    this.lastCloseInfo = null;
    this.unsubscribeNetwork = null;
    /** A subscribe flush is queued for the end of this tick. */
    this.flushQueued = false;
    // Health events.
    this.healthTimer = new Timer();
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(opts.backoff, this.random);
    this.monitor = new HealthMonitor(this.now, opts.latencyWindow ?? 512);
    this.network = opts.network ?? browserNetwork();
    this.token = opts.token;
    this.last = this.monitor.snapshot();
    this.machine = new StateMachine(opts.strictTransitions);
    this.subs = new Subscriptions(
      { now: this.now, random: this.random, dedup: opts.dedup, baselineWindowMs: opts.baselineWindowMs ?? 5e3 },
      this.monitor,
      this.emitter,
      { send: (f) => this.stream.send(f), open: () => this.st === "open", healthChanged: () => this.emitHealth() }
    );
    this.stream = new StreamTransport(
      {
        WebSocket: opts.WebSocket,
        now: this.now,
        connectTimeoutMs: opts.connectTimeoutMs ?? 1e4,
        pingIntervalMs: opts.pingIntervalMs ?? 15e3,
        healthIntervalMs: opts.healthIntervalMs ?? 3e4,
        healthFirstMs: opts.healthFirstMs ?? 3e3
      },
      {
        traffic: (at) => this.monitor.lastMessageAt = at,
        welcome: (conn, w) => this.onWelcome(conn, w),
        frame: (conn, f) => this.onFrame(conn, f),
        pong: (sentAt, receivedAt, serverTime) => {
          this.monitor.pong(sentAt, receivedAt, serverTime);
          this.emitHealth();
        },
        error: (err) => this.emitter.emit("error", err),
        closed: (conn, code, reason) => this.onStreamClosed(conn, code, reason),
        detached: () => this.subs.end(),
        healthReport: () => this.monitor.report()
      }
    );
    this.poll = new PollTransport({ fetch: opts.fetch, now: this.now, timeoutMs: opts.pollTimeoutMs ?? 65e3 });
    this.probe = new ProbeSchedule(
      { now: this.now, intervalMs: opts.probeIntervalMs ?? 6e4, maxMs: opts.probeMaxMs ?? 6e5 },
      () => this.probeStream()
    );
  }
  get st() {
    return this.machine.state;
  }
  // ---- public API ----
  /** state is the current connection state. */
  get state() {
    return this.st;
  }
  /** transport is how events arrive now ("poll" also while probing the stream). */
  get transport() {
    return this.mode;
  }
  /** cursor is the position the client resumes from; null before the first welcome. */
  get cursor() {
    return this.subs.cursor.value;
  }
  /** channels lists the channels with at least one handler. */
  get channels() {
    return this.subs.channels;
  }
  /** closeInfo says why the client is closed; null unless state is "closed". */
  get closeInfo() {
    return this.st === "closed" ? this.lastCloseInfo : null;
  }
  /** health returns a fresh snapshot of the connection's figures. */
  health() {
    return this.monitor.snapshot();
  }
  /**
   * lastHealth is the snapshot passed to the latest "health" event: the same object until
   * the next event (what React's useSyncExternalStore needs).
   */
  get lastHealth() {
    return this.last;
  }
  /** on adds a listener for a client event and returns a function that removes it. */
  on(name, fn) {
    return this.emitter.on(name, fn);
  }
  subscribe(channel, handler) {
    if (typeof channel !== "string" || channel.length === 0) throw new TypeError("subscribe: empty channel");
    if (this.subs.add(channel, handler)) this.channelsChanged();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (this.subs.remove(channel, handler)) this.channelsChanged();
    };
  }
  /** connect starts the client (no-op unless idle or closed). */
  connect() {
    if (this.st !== "idle" && this.st !== "closed") return;
    this.lastCloseInfo = null;
    this.failures = 0;
    this.backoff.reset();
    if (!this.unsubscribeNetwork) {
      this.unsubscribeNetwork = this.network.subscribe((online) => online ? this.onOnline() : this.onOffline());
    }
    this.start();
  }
  /** close stops the client for good: no reconnect until connect() is called again. */
  close() {
    if (this.st === "closed" || this.st === "idle") {
      this.unsubscribeNetwork?.();
      this.unsubscribeNetwork = null;
      return;
    }
    this.finish({ code: CloseCode.Normal, reason: "closed by app", byApp: true });
  }
  /**
   * reconnect drops the current connection and connects again at once (keeping the
   * cursor). Useful after the app knows the network changed.
   */
  reconnect() {
    if (this.st === "idle" || this.st === "closed" || this.st === "offline") return;
    this.teardown("reconnect");
    this.backoff.reset();
    this.start();
  }
  /** setToken replaces the token; an open stream gets it at once in an `auth` frame. */
  setToken(token2) {
    this.token = token2;
    this.stream.send({ type: "auth", token: token2 });
  }
  // ---- state and health ----
  /** setState applies ev through the transition table (state.ts), which asserts it. */
  setState(ev) {
    const prev = this.machine.fire(ev);
    const s = this.machine.state;
    if (s === prev) return;
    this.monitor.setState(s);
    this.emitter.emit("state", s, prev);
    this.emitHealth();
  }
  setTransport(t, reason) {
    if (t === this.mode) return;
    this.mode = t;
    this.monitor.setTransport(t);
    this.emitter.emit("transport", t, reason);
    this.emitHealth();
  }
  /** emitHealth emits a fresh snapshot now (and drops a throttled one). */
  emitHealth() {
    this.healthTimer.clear();
    this.last = this.monitor.snapshot();
    this.emitter.emit("health", this.last);
  }
  /** healthChanged emits a snapshot within healthEmitMs (event traffic). */
  healthChanged() {
    if (this.healthTimer.armed) return;
    this.healthTimer.set(this.opts.healthEmitMs ?? 1e3, () => this.emitHealth());
  }
  // ---- lifecycle ----
  /** start opens the transport of the current mode, or waits for the network. */
  start() {
    if (!this.network.online()) {
      this.setState("offline");
      return;
    }
    if (this.mode === "poll") this.startPolling();
    else this.openSocket(false);
  }
  /** teardown stops every timer and transport of the current attempt; state is the caller's. */
  teardown(reason) {
    this.cancelRefresh();
    this.retry.clear();
    this.probe.clear();
    this.poll.stop();
    this.stream.retireCurrent(CloseCode.Normal, reason);
  }
  finish(info) {
    this.teardown(info.reason || "closed");
    this.unsubscribeNetwork?.();
    this.unsubscribeNetwork = null;
    this.lastCloseInfo = info;
    this.setState("stop");
    this.emitter.emit("closed", info);
  }
  scheduleReconnect(delayMs) {
    this.retry.clear();
    this.setState("retry");
    this.retry.set(delayMs, () => this.start());
  }
  /** retryAfterDelay is the hint plus up to the hint again of jitter, within the backoff cap. */
  retryAfterDelay(hintMs) {
    if (hintMs <= 0) return this.backoff.next();
    return Math.min(this.backoff.capMs, hintMs + Math.floor(this.random() * hintMs));
  }
  onOffline() {
    if (this.st === "idle" || this.st === "closed" || this.st === "offline") return;
    this.teardown("offline");
    this.setState("offline");
  }
  onOnline() {
    if (this.st !== "offline") return;
    this.backoff.reset();
    this.failures = 0;
    this.start();
  }
  /**
   * refreshThen asks refreshToken for a new token in state reconnecting, then calls next;
   * a failing refresh is retried with backoff. Without refreshToken the close is final.
   */
  refreshThen(next, close) {
    const refresh = this.opts.refreshToken;
    if (!refresh) {
      this.emitter.emit("error", { kind: "token", message: "token expired and no refreshToken option" });
      this.finish({ code: close.code, reason: close.reason, byApp: false });
      return;
    }
    this.setState("retry");
    const op = { cancelled: false };
    this.refreshing = op;
    const current = () => !op.cancelled && this.st === "reconnecting";
    Promise.resolve().then(refresh).then(
      (tok) => {
        if (!current()) return;
        this.refreshing = null;
        this.token = tok;
        next();
      },
      (err) => {
        if (!current()) return;
        this.refreshing = null;
        this.emitter.emit("error", { kind: "token", message: `refreshToken failed: ${String(err)}`, cause: err });
        this.retry.set(this.backoff.next(), () => this.refreshThen(next, close));
      }
    );
  }
  cancelRefresh() {
    if (this.refreshing) this.refreshing.cancelled = true;
    this.refreshing = null;
  }
  // ---- stream ----
  openSocket(probing) {
    this.retry.clear();
    try {
      this.stream.open(() => streamUrl(this.opts.url, this.token), probing);
    } catch (err) {
      if (!(err instanceof StreamOpenError)) throw err;
      this.emitter.emit("error", { kind: "protocol", message: `cannot open ${this.opts.url}: ${String(err.cause)}`, cause: err.cause });
      this.finish({ code: CloseCode.BadRequest, reason: "bad url", byApp: false });
      return;
    }
    if (!probing) this.setState("connect");
  }
  onWelcome(conn, w) {
    this.subs.begin(w, conn.welcomedAt);
    this.failures = 0;
    if (this.everWelcomed) this.monitor.reconnects++;
    this.everWelcomed = true;
    this.monitor.session = w.session ?? null;
    this.monitor.instance = w.instance ?? null;
    this.probe.clear();
    this.poll.stop();
    this.probe.welcomed();
    this.setTransport("stream", "stream welcomed");
    this.setState("welcome");
    this.emitter.emit("welcome", w);
    this.subs.flush();
  }
  onFrame(conn, frame) {
    switch (frame.type) {
      case "subscribed":
        return this.subs.onSubscribed(frame);
      case "events":
        if (this.subs.onEvents(frame, this.now())) this.healthChanged();
        return;
      case "transport":
        return this.onTransport(conn, frame);
      case "error":
        return this.subs.onErrorFrame(frame);
      case "ping":
        return this.subs.onPing(frame);
      // answered by the transport; its head may move the cursor
      default:
        return;
    }
  }
  onTransport(conn, f) {
    if (f.transport !== "poll") return;
    this.stream.retire(conn, CloseCode.Normal, "switching to long-poll");
    this.switchToPoll(f.retryMs && f.retryMs > 0 ? f.retryMs : this.probe.intervalMs, f.reason ?? "server asked");
  }
  /** onStreamClosed decides what the end of a stream connection (or probe) leads to. */
  onStreamClosed(conn, code, reason) {
    if (this.st === "closed") return;
    const action = actionFor(code);
    const hint = retryHint(reason);
    if (conn.welcome) {
      if (this.now() - conn.openedAt >= (this.opts.stableAfterMs ?? 1e4)) this.backoff.reset();
    } else {
      this.failures++;
    }
    if (conn.probing) {
      if (action === "stop") return this.finish({ code, reason, byApp: false });
      if (action === "use-poll") {
        this.probe.refused();
        return this.enterPoll(hint > 0 ? hint : this.probe.intervalMs);
      }
      return this.enterPoll(this.probe.failed());
    }
    switch (action) {
      case "stop":
        return this.finish({ code, reason, byApp: false });
      case "use-poll":
        return this.switchToPoll(hint > 0 ? hint : this.probe.intervalMs, `close ${code}`);
      case "refresh-token":
        return this.refreshThen(() => this.start(), { code, reason });
      case "retry-after":
        return this.scheduleReconnect(this.retryAfterDelay(hint));
      case "backoff": {
        const threshold = this.opts.breakerThreshold ?? 5;
        if (threshold > 0 && this.failures >= threshold) {
          return this.switchToPoll(this.probe.intervalMs, `${this.failures} failed stream attempts`, "failure");
        }
        return this.scheduleReconnect(this.backoff.next());
      }
    }
  }
  channelsChanged() {
    if (this.mode === "poll" && this.st === "polling") {
      this.poll.stop();
      this.pollOnce();
      return;
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.subs.flush();
    });
  }
  // ---- long-polling ----
  /** switchToPoll moves to long-polling and probes the stream after probeAfterMs. */
  switchToPoll(probeAfterMs, reason, cause = "server") {
    this.probe.begin(cause);
    this.failures = 0;
    this.setTransport("poll", reason);
    this.enterPoll(probeAfterMs);
  }
  enterPoll(probeAfterMs) {
    this.mode = "poll";
    this.probe.schedule(probeAfterMs);
    this.startPolling();
  }
  startPolling() {
    if (!this.network.online()) {
      this.setState("offline");
      return;
    }
    if (!this.probe.armed) this.probe.schedule(this.probe.intervalMs);
    this.setState("poll");
    this.pollOnce();
  }
  /**
   * probeStream tries the stream while polling; on welcome the client moves back. A probe
   * due in another state is dropped: after a token refresh (reconnecting), startPolling
   * schedules the next one.
   */
  probeStream() {
    if (this.st !== "polling") return;
    if (this.stream.current) return;
    this.poll.stop();
    this.openSocket(true);
  }
  pollOnce() {
    const channels = this.channels;
    if (channels.length === 0) return;
    if (!this.poll.available) {
      this.emitter.emit("error", { kind: "poll", message: "no fetch implementation; going back to the stream" });
      this.backToStream();
      return;
    }
    const query = { url: pollBaseUrl(this.opts.url, this.opts.pollUrl), channels, cursor: this.subs.cursor.query(), token: this.token };
    this.poll.request(query, (r) => {
      if (this.st === "polling") this.onPollResult(r);
    });
  }
  schedulePoll(delayMs) {
    this.poll.after(delayMs, () => {
      if (this.st === "polling") this.pollOnce();
    });
  }
  onPollResult(r) {
    switch (r.kind) {
      case "answer":
        return this.onPoll(r.body, r.channels, r.started);
      case "refused":
        return this.pollFailed(r.status, r.hintMs);
      case "failed":
        this.emitter.emit("error", { kind: "poll", message: `poll failed: ${String(r.error)}`, cause: r.error });
        return this.schedulePoll(this.backoff.next());
    }
  }
  pollFailed(status, hintMs) {
    const action = httpAction(status);
    this.emitter.emit("error", { kind: "poll", code: String(status), message: `poll answered HTTP ${status}` });
    switch (action) {
      case "unsupported":
        return this.backToStream();
      case "stop":
        return this.finish({ code: CloseCode.BadRequest, reason: `poll HTTP ${status}`, byApp: false });
      case "refresh-token":
        return this.refreshThen(() => this.startPolling(), { code: CloseCode.Unauthorized, reason: `poll HTTP ${status}` });
      case "retry-after":
        return this.schedulePoll(this.retryAfterDelay(hintMs));
      default:
        return this.schedulePoll(this.backoff.next());
    }
  }
  /** backToStream leaves polling (endpoint missing, or server says streaming is allowed). */
  backToStream() {
    this.probe.clear();
    this.poll.stop();
    this.stream.retireCurrent(CloseCode.Normal, "back to the stream");
    this.setTransport("stream", "poll unavailable");
    this.scheduleReconnect(this.backoff.next());
  }
  onPoll(body, channels, started) {
    this.backoff.reset();
    const receivedAt = this.now();
    this.monitor.lastMessageAt = receivedAt;
    const count = this.subs.applyPoll(body, channels, receivedAt);
    this.healthChanged();
    if (body.transport === "stream" && this.probe.followsServer) {
      this.probeStream();
      return;
    }
    if (typeof body.retryMs === "number" && body.retryMs > 0 && this.probe.followsServer) this.probe.schedule(body.retryMs, true);
    const quick = receivedAt - started < 1e3;
    this.schedulePoll(count === 0 && quick ? this.opts.pollIdleDelayMs ?? 1e3 : 0);
  }
};

// src/typed.ts
var PARAM = /^[A-Za-z0-9_@=-]+$/;
var PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
var MAX_CHANNEL_LENGTH = 128;
function typedChannel(pattern, values) {
  let i = 0;
  const name = pattern.replace(PLACEHOLDER, (_m, param) => {
    if (i >= values.length) throw new TypeError(`${pattern}: no value for {${param}}`);
    const v = values[i++];
    if (typeof v !== "string" || !PARAM.test(v)) {
      throw new TypeError(`${pattern}: {${param}} = ${JSON.stringify(v)}: want 1 or more of A-Z a-z 0-9 _ - @ =`);
    }
    return v;
  });
  if (i !== values.length) throw new TypeError(`${pattern}: ${values.length} values for ${i} parameters`);
  if (name.length > MAX_CHANNEL_LENGTH) throw new TypeError(`${pattern}: channel name over ${MAX_CHANNEL_LENGTH} bytes`);
  return name;
}

// demo/channels.gen.ts
function notes(room2) {
  return typedChannel("public.notes.{room}", [room2]);
}

// demo/demo.ts
var params = new URLSearchParams(location.search);
var num = (name) => {
  const v = params.get(name);
  return v !== null && /^\d+$/.test(v) ? Number(v) : void 0;
};
var maxEvents = num("max") ?? 2e3;
var maxLog = 200;
var $ = (id) => {
  const el = document.querySelector(`[data-testid="${id}"]`);
  if (!el) throw new Error(`demo: missing [data-testid=${id}]`);
  return el;
};
var token = params.get("token") || void 0;
var client = new RealtimeClient({
  url: params.get("url") ?? void 0,
  token,
  backoff: { baseMs: num("baseMs") ?? 1e3, capMs: num("capMs") ?? 3e5 },
  pingIntervalMs: num("ping") ?? 5e3,
  healthIntervalMs: num("health") ?? 3e4,
  healthEmitMs: 250
});
window.realtimeDemo = { client };
var eventCount = 0;
var resyncs = 0;
var unsubscribers = /* @__PURE__ */ new Map();
function log(text) {
  const li = document.createElement("li");
  li.textContent = `${(/* @__PURE__ */ new Date()).toISOString().slice(11, 23)} ${text}`;
  const list = $("log");
  list.prepend(li);
  while (list.childElementCount > maxLog) list.lastElementChild.remove();
}
function onEvent(ev, text) {
  eventCount++;
  const li = document.createElement("li");
  li.dataset.testid = "event";
  li.dataset.id = ev.id;
  li.dataset.seq = String(ev.seq);
  li.dataset.channel = ev.channel;
  const cells = [
    ["seq", String(ev.seq)],
    ["ch", ev.channel],
    ["id", ev.id],
    ["data", text ?? (ev.type ? ev.type + " " : "") + (ev.data === void 0 ? "" : JSON.stringify(ev.data))]
  ];
  for (const [cls, text2] of cells) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text2;
    if (cls === "ch" || cls === "id") span.title = text2;
    li.append(span);
  }
  const list = $("events");
  list.prepend(li);
  while (list.childElementCount > maxEvents) list.lastElementChild.remove();
  $("event-count").textContent = String(eventCount);
}
function renderChannels() {
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
function subscribe(ch) {
  ch = ch.trim();
  if (!ch || unsubscribers.has(ch)) return;
  unsubscribers.set(ch, client.subscribe(ch, onEvent));
  if (!$("publish-channel").value) $("publish-channel").value = ch;
  renderChannels();
  log(`subscribe ${ch}`);
}
function unsubscribe(ch) {
  unsubscribers.get(ch)?.();
  unsubscribers.delete(ch);
  renderChannels();
  log(`unsubscribe ${ch}`);
}
var ms = (v) => {
  if (v === null) return "-";
  const a = Math.abs(v);
  if (a >= 1e3) return `${(v / 1e3).toFixed(2)} s`;
  return a >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`;
};
function renderHealth(h) {
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
    b.textContent = `${(h.timeInStateMs[s] / 1e3).toFixed(1)} s`;
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
  if (i.code === 4401 || i.code === 4403 || i.code >= 4200 && i.code < 4300) {
    $("token-status").textContent = token ? `The server refused this token (${i.code} ${i.reason}): paste another one.` : `This server wants a token (${i.code} ${i.reason}): paste one above or open the page with ?token=.`;
  }
});
$("token-status").textContent = token ? "Connecting with the token from the address (?token=)." : $("token-status").textContent;
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const next = new URLSearchParams(location.search);
  const value = $("token-input").value.trim();
  if (value) next.set("token", value);
  else next.delete("token");
  const chans = [...unsubscribers.keys()].join(",");
  if (chans) next.set("channels", chans);
  location.search = next.toString();
});
$("subscribe-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("channel-input");
  for (const ch of input.value.split(",")) subscribe(ch);
  input.value = "";
});
$("clear-events").addEventListener("click", () => {
  $("events").replaceChildren();
});
var keyInput = $("key-input");
keyInput.value = params.get("key") ?? "dev";
var published = 0;
$("publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("publish-result");
  const channel = $("publish-channel").value.trim();
  const type = $("publish-type").value.trim();
  const raw = $("publish-data").value.trim();
  let data;
  try {
    data = raw === "" ? void 0 : JSON.parse(raw);
  } catch (err) {
    out.textContent = `Data is not JSON: ${String(err)}`;
    return;
  }
  const id = `demo-${Date.now().toString(36)}-${++published}`;
  try {
    const res = await fetch("/v2/realtime/publish", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyInput.value}` },
      body: JSON.stringify({ channel, type: type || void 0, data, id })
    });
    const text = await res.text();
    out.textContent = res.ok ? `Published ${id}: ${text}` : `HTTP ${res.status}: ${text}`;
  } catch (err) {
    out.textContent = `Publish failed: ${String(err)}`;
  }
});
for (const ch of (params.get("channels") ?? "public.demo").split(",")) subscribe(ch);
var room = params.get("room") ?? "lobby";
client.subscribe(notes(room), (ev) => onEvent(ev, `${ev.data.author}: ${ev.data.text}`));
log(`subscribe ${notes(room)} (typed: Note)`);
renderHealth(client.health());
client.connect();
