// Browser test: a page on a quiet channel while another channel goes past retention
// resumes recovered after the server is killed and restarted (docs/protocol.md "Fresh
// cursors on quiet channels": the server's pings carry the head, the client takes it).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser, eventIds, openDemoPage, Server, stateOf, waitFor } from "./harness.js";

let server: Server;
let browser: Browser;

beforeAll(async () => {
  // Pings every 500 ms, 1 MiB of retention, a two-event window.
  server = await Server.start(["-heartbeat", "500ms", "-retention-mb", "1", "-window", "2"]);
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

describe("fresh cursors on quiet channels", () => {
  it("a page on a quiet channel resumes recovered after a busy channel went past retention", async () => {
    const page = await browser.page();
    await openDemoPage(page, server.base, "channels=fc.quiet&baseMs=500&capMs=2000");
    await waitFor("state open", async () => (await stateOf(page)) === "open");
    await waitFor("subscribed", async () => ((await page.textContent('[data-testid="log"]')) ?? "").includes("subscribed fc.quiet"));
    const [q0] = await server.publish([{ channel: "fc.quiet", id: "q-0" }]);
    await waitFor("the first quiet event", async () => (await eventIds(page)).length === 1);

    // About 2.3 MB on another channel: retention (1 MiB) drops the quiet event and more.
    const pad = "x".repeat(48_000);
    let last = 0;
    for (let b = 0; b < 3; b++) {
      const acks = await server.publish(Array.from({ length: 16 }, (_, i) => ({ channel: "fc.busy", id: `busy-${b}-${i}`, data: pad })));
      last = acks[acks.length - 1].seq;
    }
    const cursor = () => page.evaluate(() => (window as any).realtimeDemo.client.cursor);
    const epoch = (await cursor()).epoch;
    // What a client that follows only its events would resume from is past retention.
    const old = await (await fetch(`${server.base}/v2/realtime/poll?channels=fc.quiet&cursor=${q0.seq}.${epoch}&timeout=0`)).json();
    expect(old.recovery).toMatchObject({ recovered: false, reason: "too_old" });
    // The page's cursor follows the server's pings.
    await waitFor("the page's cursor at the head", async () => (await cursor()).seq >= last);

    await server.kill();
    await waitFor("page notices", async () => (await stateOf(page)) !== "open");
    await server.launch();
    await waitFor("page back open", async () => (await stateOf(page)) === "open", 30_000);
    await waitFor("a recovery", async () => Number(await page.textContent('[data-testid="recoveries"]')) >= 1);
    await server.publish([{ channel: "fc.quiet", id: "q-1" }]);
    await waitFor("the next quiet event", async () => (await eventIds(page)).length === 2);
    expect(await eventIds(page)).toEqual(["q-0", "q-1"]);
    expect(await page.textContent('[data-testid="resyncs"]')).toBe("0");
    await page.close();
  });
});
