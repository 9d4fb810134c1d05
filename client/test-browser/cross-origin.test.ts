// Cross-origin browser test: the page is served from one loopback port and the server
// listens on another (the usual dev set-up: page on :5173, server on :4000), so the
// browser sends an Origin the server must allow (-origins). The page receives every
// event on the stream, after the streaming flag goes OFF on long-poll (a cross-origin
// fetch, which needs the server's CORS headers), and back on the stream.
import { createServer, type Server as HTTPServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser, DEV_ADMIN_KEY, eventIds, freePort, repoRoot, Server, sleep, stateOf, waitFor } from "./harness.js";

let server: Server;
let browser: Browser;
let page: HTTPServer;
let pageBase = "";

const demoDir = join(repoRoot, "web", "demo");
const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

/** servePage serves the committed demo page on its own loopback port. */
async function servePage(port: number): Promise<HTTPServer> {
  const s = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = path === "/" ? "/index.html" : path;
    if (!["/index.html", "/demo.js", "/demo.css"].includes(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": types[file.slice(file.lastIndexOf("."))] });
    res.end(readFileSync(join(demoDir, file)));
  });
  await new Promise<void>((res) => s.listen(port, "127.0.0.1", res));
  return s;
}

beforeAll(async () => {
  const pagePort = await freePort();
  pageBase = `http://127.0.0.1:${pagePort}`;
  page = await servePage(pagePort);
  server = await Server.start(["-origins", `127.0.0.1:${pagePort}`]);
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
  await new Promise((res) => page?.close(res));
});

async function setFlag(enabled: boolean): Promise<void> {
  const r = await fetch(`${server.base}/v2/flags/admin/realtime-streaming-v2`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${DEV_ADMIN_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ enabled, reason: "cross-origin browser test" }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!r.ok) throw new Error(`flag: HTTP ${r.status}: ${await r.text()}`);
}

describe("page and server on different origins", () => {
  it("streams, long-polls with CORS when the flag is OFF, and streams again", async () => {
    const p = await browser.page();
    const refused: string[] = [];
    p.on("console", (m) => {
      if (/CORS|blocked/i.test(m.text())) refused.push(m.text());
    });
    const streamUrl = `ws://127.0.0.1:${server.port}/v2/realtime/stream`;
    await p.goto(`${pageBase}/?url=${encodeURIComponent(streamUrl)}&channels=xo.ch&ping=1000`);
    expect(new URL(p.url()).origin).not.toBe(server.base); // really another origin
    await waitFor("stream open", async () => (await stateOf(p)) === "open");

    const want: string[] = [];
    let n = 0;
    const publish = async (k: number) => {
      const evs = Array.from({ length: k }, () => ({ channel: "xo.ch", id: `x-${n++}`, data: { n } }));
      want.push(...evs.map((e) => e.id));
      await server.publish(evs);
    };
    await publish(5);
    await waitFor("events on the stream", async () => (await eventIds(p)).length === 5);

    await setFlag(false);
    await waitFor("on long-poll", async () => (await stateOf(p)) === "polling", 15_000);
    await publish(5);
    await waitFor("events on long-poll", async () => (await eventIds(p)).length === want.length, 20_000);

    await setFlag(true);
    await waitFor("back on the stream", async () => (await stateOf(p)) === "open", 20_000);
    await publish(5);
    await waitFor("all events", async () => (await eventIds(p)).length >= want.length, 20_000);
    await sleep(500);
    expect(await eventIds(p)).toEqual(want);
    expect(refused).toEqual([]);
    await p.close();
  });

  it("gets nothing from a server that does not allow the page's origin", async () => {
    const closed = await Server.start([]); // same origin only
    try {
      const p = await browser.page();
      const streamUrl = `ws://127.0.0.1:${closed.port}/v2/realtime/stream`;
      await p.goto(`${pageBase}/?url=${encodeURIComponent(streamUrl)}&channels=xo.no&ping=1000`);
      await closed.publish([{ channel: "xo.no", id: "secret" }]);
      await sleep(3000);
      expect(await stateOf(p)).not.toBe("open");
      expect(await eventIds(p)).toEqual([]);
      const m = await (await fetch(`${closed.base}/v2/realtime/metrics`)).json();
      expect(m.refusals.origin).toBeGreaterThan(0);
      await p.close();
    } finally {
      await closed.cleanup();
    }
  });
});
