// Browser test of the streaming flag: turned OFF, the demo page moves to long-polling;
// turned ON, back to the stream; across both switches it shows every event exactly once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser, DEV_ADMIN_KEY, eventIds, openDemoPage, Server, stateOf, waitFor, sleep } from "./harness.js";

const ADMIN_KEY = DEV_ADMIN_KEY; // dev mode: a server with one key must have all three
let server: Server;
let browser: Browser;

beforeAll(async () => {
  server = await Server.start(["-public-prefixes", "*"]);
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

async function setFlag(enabled: boolean): Promise<void> {
  const r = await fetch(`${server.base}/v2/flags/admin/realtime-streaming-v2`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ enabled, reason: "browser test" }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!r.ok) throw new Error(`flag: HTTP ${r.status}: ${await r.text()}`);
}

describe("streaming flag", () => {
  it("moves the page to long-polling and back without losing or repeating an event", async () => {
    const page = await browser.page();
    await openDemoPage(page, server.base, "channels=flag.ch&ping=1000");
    await waitFor("stream open", async () => (await stateOf(page)) === "open");
    const want: string[] = [];
    let n = 0;
    const publish = async (k: number) => {
      const evs = Array.from({ length: k }, () => ({ channel: "flag.ch", id: `f-${n++}`, data: { n } }));
      want.push(...evs.map((e) => e.id));
      await server.publish(evs);
    };
    await publish(5);
    await waitFor("first events", async () => (await eventIds(page)).length === 5);

    await setFlag(false);
    await publish(3); // racing the switch
    await waitFor("on long-poll", async () => (await stateOf(page)) === "polling");
    await publish(5);
    await waitFor("events while polling", async () => (await eventIds(page)).length === want.length);

    await setFlag(true);
    await publish(3); // racing the switch back
    await waitFor("back on the stream", async () => (await stateOf(page)) === "open");
    await publish(5);
    await waitFor("all events", async () => (await eventIds(page)).length >= want.length);
    await sleep(500);
    expect(await eventIds(page)).toEqual(want);
    await page.close();
  });
});
