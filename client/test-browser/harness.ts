// Harness for the browser tests: builds and runs the real realtimed on 127.0.0.1 with a
// temp data dir, and drives Debian's Chromium (/usr/bin/chromium) with playwright-core.
// Nothing here downloads a browser or touches anything but loopback.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterEach } from "vitest";

export const repoRoot = resolve(import.meta.dirname, "..", "..");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const PUBLISHER_KEY = "dev";
export const DEV_ADMIN_KEY = "dev-admin-key-change-me";

/** realtimedBinary is the server binary built by global-setup.ts (or $REALTIMED_BIN). */
export function realtimedBinary(): string {
  const bin = process.env.REALTIMED_BIN;
  if (!bin) throw new Error("REALTIMED_BIN unset: run the browser tests with vitest.browser.config.ts");
  return bin;
}

/** freePort asks the kernel for an unused loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * PATIENCE_MS bounds every wait of the browser tests (as testutil.Patience does the Go
 * tests'): ten times what the slowest takes on a loaded 2-core machine. A test waits for
 * what it expects, never for a duration.
 */
export const PATIENCE_MS = 60_000;

/**
 * Server is one realtimed process. restart() starts a new process on the same address
 * and data directory after kill().
 */
export class Server {
  proc: ChildProcess | null = null;
  readonly base: string;
  private logFile: string;

  constructor(
    readonly port: number,
    readonly dataDir: string,
    private readonly extraArgs: string[] = [],
  ) {
    this.base = `http://127.0.0.1:${port}`;
    this.logFile = join(dataDir, "..", `realtimed-${port}.log`);
  }

  static async start(extraArgs: string[] = []): Promise<Server> {
    const root = mkdtempSync(join(tmpdir(), "realtimed-test-"));
    const s = new Server(await freePort(), join(root, "data"), extraArgs);
    await s.launch();
    return s;
  }

  async launch(): Promise<void> {
    const bin = realtimedBinary();
    const fd = openSync(this.logFile, "a");
    this.proc = spawn(
      bin,
      // Dev mode (no keys): anonymous pages read every non-private channel, the publisher
      // key is "dev" and the flags admin key the dev one (DEV_ADMIN_KEY).
      ["-addr", `127.0.0.1:${this.port}`, "-data", this.dataDir, "-public-prefixes", "*", ...this.extraArgs],
      { stdio: ["ignore", fd, fd], env: { ...process.env } },
    );
    closeSync(fd);
    const proc = this.proc;
    let exited: string | null = null;
    proc.once("exit", (code, sig) => (exited = `exit code ${code} signal ${sig}`));
    const deadline = Date.now() + PATIENCE_MS;
    for (;;) {
      if (exited) throw new Error(`realtimed ${exited} before it was ready; log:\n${this.log()}`);
      try {
        const r = await fetch(`${this.base}/v2/realtime/metrics`, { signal: AbortSignal.timeout(1000) });
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`realtimed not ready in ${PATIENCE_MS / 1000} s; log:\n${this.log()}`);
      await sleep(100);
    }
  }

  log(): string {
    try {
      return readFileSync(this.logFile, "utf8").slice(-4000);
    } catch {
      return "(no log)";
    }
  }

  /** kill sends SIGKILL and waits for the process to be gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
    this.proc = null;
  }

  /** stop ends the process gracefully (SIGTERM, then SIGKILL after 10 s). */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(t);
    this.proc = null;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(join(this.dataDir, ".."), { recursive: true, force: true });
  }

  /** publish posts events with the publisher key (dev mode's by default) and returns the acks. */
  async publish(events: Array<{ channel: string; id: string; type?: string; data?: unknown }>, key = PUBLISHER_KEY): Promise<any[]> {
    const r = await fetch(`${this.base}/v2/realtime/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ events }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`publish: HTTP ${r.status}: ${text}`);
    return JSON.parse(text).acks;
  }
}

/** Browser is one Chromium with a fresh profile. */
export class Browser {
  private constructor(
    readonly context: BrowserContext,
    private readonly profile: string,
  ) {}

  static async launch(): Promise<Browser> {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
    const profile = mkdtempSync(join(tmpdir(), "chromium-profile-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        // When realtimed does not serve the demo page itself, the tests hand the committed
        // page to the browser at the server's origin (openDemoPage); Chromium cannot tell
        // such a page is local and would refuse its WebSocket to 127.0.0.1.
        "--disable-features=LocalNetworkAccessChecks",
      ],
    });
    const b = new Browser(context, profile);
    launched.add(b);
    return b;
  }

  /** Uncaught errors of this browser's pages since the last test ended (see failOnPageErrors). */
  readonly pageErrors: string[] = [];

  async page(): Promise<Page> {
    const p = await this.context.newPage();
    p.on("pageerror", (err) => {
      this.pageErrors.push(`${p.url()}: ${err.stack ?? err.message}`);
      console.error("page error:", err);
    });
    return p;
  }

  async close(): Promise<void> {
    await this.context.close();
    rmSync(this.profile, { recursive: true, force: true });
    launched.delete(this);
  }
}

// failOnPageErrors: a test during which a page of a browser the harness launched threw an
// uncaught error fails, whatever it asserted (registered for every file importing this).
const launched = new Set<Browser>();
afterEach(() => {
  const errs = [...launched].flatMap((b) => b.pageErrors.splice(0));
  if (errs.length > 0) throw new Error(`${errs.length} uncaught page error(s):\n${errs.join("\n")}`);
});

const demoDir = join(repoRoot, "web", "demo");
const demoTypes: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

/**
 * openDemoPage opens the demo page at the server's origin. When realtimed serves it
 * (web.DemoHandler mounted at "/"), the page comes from the server; otherwise the
 * committed files of web/demo are served to the browser for those three URLs only, so the
 * page still talks to the real server (same origin: stream, publish).
 */
let serverHasDemo: boolean | null = null;
export async function openDemoPage(page: Page, base: string, query: string): Promise<void> {
  if (serverHasDemo === null) {
    const r = await fetch(base + "/", { signal: AbortSignal.timeout(5000) }).catch(() => null);
    serverHasDemo = !!r && r.ok && (await r.text()).includes('data-testid="health"');
    if (!serverHasDemo) console.log("realtimed does not serve the demo at / yet: serving web/demo to the browser");
  }
  if (!serverHasDemo) {
    for (const name of ["/", "/index.html", "/demo.js", "/demo.css", "/favicon.svg"]) {
      await page.route((url) => url.origin === base && url.pathname === name, (route) => {
        const file = name === "/" ? "/index.html" : name;
        return route.fulfill({
          contentType: demoTypes[file.slice(file.lastIndexOf("."))],
          body: readFileSync(join(demoDir, file)),
        });
      });
    }
  }
  await page.goto(`${base}/?${query}`);
}

/** eventIds reads the IDs of the events the demo page shows, oldest first. */
export async function eventIds(page: Page): Promise<string[]> {
  return page.$$eval('[data-testid="event"]', (els) => els.map((e) => (e as HTMLElement).dataset.id!).reverse());
}

/** waitFor polls fn until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = PATIENCE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | null | undefined | false;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

export async function stateOf(page: Page): Promise<string> {
  return (await page.textContent('[data-testid="state"]')) ?? "";
}

/**
 * watch records what must not happen on a page: console errors, uncaught exceptions,
 * failed requests and HTTP errors (a missing favicon included). Call stop() before
 * closing the page (requests a closing page aborts are not failures).
 */
export function watch(page: Page): { problems: string[]; stop(): void } {
  const problems: string[] = [];
  let on = true;
  page.on("console", (m) => on && m.type() === "error" && problems.push(`console error: ${m.text()}`));
  page.on("pageerror", (e) => on && problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // An event stream the page closes (range switch) or leaves (navigation) ends aborted.
    if (!on || (r.resourceType() === "eventsource" && r.failure()?.errorText === "net::ERR_ABORTED")) return;
    problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`);
  });
  page.on("response", (r) => on && r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
  return { problems, stop: () => (on = false) };
}

/** overflow is how far the page is wider than the window, px (0: no horizontal scroll). */
export async function overflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

const axeSource = readFileSync(join(repoRoot, "client", "node_modules", "axe-core", "axe.min.js"), "utf8");

/**
 * axeViolations runs axe-core (from node_modules, evaluated in the page: no network, and
 * not subject to the page's CSP) and returns the serious and critical violations.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const r = await (window as any).axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v: any) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n: any) => n.target.join(" ")) }));
  });
  return found
    .filter((v: { impact: string }) => v.impact === "serious" || v.impact === "critical")
    .map((v: { id: string; impact: string; help: string; nodes: string[] }) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.join(", ")})`);
}
