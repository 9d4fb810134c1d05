import { STATES, type ConnectionState } from "./state.js";
import type { HealthReport, Transport } from "./types.js";

// ConnectionState and STATES moved to state.ts; re-exported for existing imports.
export { STATES, type ConnectionState };

/** HealthSnapshot is the client's view of its connection at one moment. */
export interface HealthSnapshot {
  state: ConnectionState;
  transport: Transport;
  /** Round-trip time of the last ping/pong, ms; null before the first pong. */
  rttMs: number | null;
  /** Smallest RTT seen in the sample window, ms. */
  minRttMs: number | null;
  /** Estimated server clock minus local clock, ms (from the lowest-RTT recent sample). */
  clockOffsetMs: number | null;
  /** Publish-to-receive latency over the last `latencyWindow` live events, corrected by the clock offset. */
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  latencySamples: number;
  /** Connections opened after the first one. */
  reconnects: number;
  /** Resumes the server answered with recovered:true. */
  recoveries: number;
  /** Resumes answered with recovered:false (the app got a "resync"). */
  notRecovered: number;
  /** Events delivered to handlers (after dedup). */
  eventsReceived: number;
  /** Events dropped because their ID was seen before. */
  duplicates: number;
  /** Milliseconds spent in each state since the client was created. */
  timeInStateMs: Record<ConnectionState, number>;
  /** Local time (ms) the current state was entered. */
  stateSince: number;
  /** Session and instance from the current connection's welcome. */
  session: string | null;
  instance: string | null;
  /** Local time (ms) of the last event or frame received; null if none. */
  lastMessageAt: number | null;
}

/** OffsetSample is one ping/pong measurement. */
interface OffsetSample {
  rtt: number;
  offset: number;
}

/**
 * HealthMonitor accumulates the figures of a HealthSnapshot. All windows are bounded:
 * `latencyWindow` latency samples and `rttWindow` ping samples.
 */
export class HealthMonitor {
  private state: ConnectionState = "idle";
  private stateSince: number;
  private readonly timeIn: Record<ConnectionState, number>;
  private transport: Transport = "stream";
  private rtt: number | null = null;
  private readonly rttSamples: OffsetSample[] = [];
  private readonly latencies: Float64Array;
  private latencyCount = 0; // samples written in total; ring index = count % length
  reconnects = 0;
  recoveries = 0;
  notRecovered = 0;
  eventsReceived = 0;
  duplicates = 0;
  session: string | null = null;
  instance: string | null = null;
  lastMessageAt: number | null = null;

  constructor(
    private readonly now: () => number,
    latencyWindow = 512,
    private readonly rttWindow = 8,
  ) {
    this.stateSince = now();
    this.latencies = new Float64Array(Math.max(1, latencyWindow));
    this.timeIn = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<ConnectionState, number>;
  }

  setState(s: ConnectionState): void {
    const t = this.now();
    this.timeIn[this.state] += Math.max(0, t - this.stateSince);
    this.state = s;
    this.stateSince = t;
  }

  setTransport(t: Transport): void {
    this.transport = t;
  }

  /**
   * pong records a ping answered: sentAt and receivedAt are local clock, serverTime the
   * server's clock when it answered. offset = serverTime - (sentAt + rtt/2).
   */
  pong(sentAt: number, receivedAt: number, serverTime?: number): void {
    const rtt = Math.max(0, receivedAt - sentAt);
    this.rtt = rtt;
    if (typeof serverTime === "number" && serverTime > 0) {
      this.rttSamples.push({ rtt, offset: serverTime - (sentAt + rtt / 2) });
      if (this.rttSamples.length > this.rttWindow) this.rttSamples.shift();
    }
  }

  /** clockOffset is the offset of the lowest-RTT sample in the window (least queuing error). */
  clockOffset(): number | null {
    let best: OffsetSample | null = null;
    for (const s of this.rttSamples) if (!best || s.rtt < best.rtt) best = s;
    return best ? best.offset : null;
  }

  /** latency records the publish-to-receive latency of one live event. */
  latency(publishTs: number, receivedAt: number): void {
    const off = this.clockOffset() ?? 0;
    // Server clock at receipt = local + offset.
    const l = Math.max(0, receivedAt + off - publishTs);
    this.latencies[this.latencyCount % this.latencies.length] = l;
    this.latencyCount++;
  }

  private percentiles(): { p50: number | null; p99: number | null; n: number } {
    const n = Math.min(this.latencyCount, this.latencies.length);
    if (n === 0) return { p50: null, p99: null, n };
    const sorted = Array.from(this.latencies.subarray(0, n)).sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
    return { p50: at(0.5), p99: at(0.99), n };
  }

  snapshot(): HealthSnapshot {
    const t = this.now();
    const timeInStateMs = { ...this.timeIn };
    timeInStateMs[this.state] += Math.max(0, t - this.stateSince);
    const p = this.percentiles();
    let minRtt: number | null = null;
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
      lastMessageAt: this.lastMessageAt,
    };
  }

  /** report is the body of the `health` frame sent to the server. */
  report(): HealthReport {
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
      transport: s.transport,
    };
  }
}
