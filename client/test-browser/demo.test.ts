// Browser tests: the demo page in headless Chromium against the real realtimed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { Browser, eventIds, openDemoPage, Server, stateOf, waitFor, sleep } from "./harness.js";

let server: Server;
let browser: Browser;

beforeAll(async () => {
  server = await Server.start();
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

async function openDemo(query: string): Promise<Page> {
  const page = await browser.page();
  await openDemoPage(page, server.base, query);
  await waitFor("state open", async () => (await stateOf(page)) === "open");
  return page;
}

const numbered = (channel: string, prefix: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ channel, id: `${prefix}-${from + i}`, type: "n", data: { n: from + i } }));

describe("demo page", () => {
  it("receives published events on the channels it picked", async () => {
    const page = await openDemo("channels=t1.a,t1.b&ping=1000");
    // A channel picked through the form, too.
    await page.fill('[data-testid="channel-input"]', "t1.c");
    await page.click('[data-testid="subscribe-button"]');
    await waitFor("t1.c listed", async () => (await page.$('[data-testid="channel-list"] li[data-channel="t1.c"]')) !== null);
    // A channel added later is live from when the server registers it: wait for that.
    await waitFor("t1.c subscribed", async () => ((await page.textContent('[data-testid="log"]')) ?? "").includes("subscribed t1.c"));
    await server.publish([...numbered("t1.a", "a", 1, 3), ...numbered("t1.b", "b", 1, 2), ...numbered("t1.c", "c", 1, 2), ...numbered("t1.other", "x", 1, 2)]);
    const ids = await waitFor("7 events", async () => {
      const got = await eventIds(page);
      return got.length >= 7 ? got : null;
    });
    await sleep(300);
    expect(await eventIds(page)).toEqual(["a-1", "a-2", "a-3", "b-1", "b-2", "c-1", "c-2"]);
    expect(ids).toHaveLength(7);
    const first = page.locator('[data-testid="event"][data-id="a-1"]');
    expect(await first.getAttribute("data-channel")).toBe("t1.a");
    expect(await first.textContent()).toContain('{"n":1}');
    await page.close();
  });

  it("publishes from the page's form", async () => {
    const page = await openDemo("channels=t2.form");
    await page.fill('[data-testid="publish-channel"]', "t2.form");
    await page.fill('[data-testid="publish-type"]', "greeting");
    await page.fill('[data-testid="publish-data"]', '{"hello":"from the form"}');
    await page.click('[data-testid="publish-button"]');
    await waitFor("event from the form", async () => (await eventIds(page)).length === 1);
    expect(await page.textContent('[data-testid="publish-result"]')).toMatch(/^Published demo-/);
    expect(await page.textContent('[data-testid="events"]')).toContain("from the form");
    // Bad JSON is refused on the page, nothing is sent.
    await page.fill('[data-testid="publish-data"]', "{nope");
    await page.click('[data-testid="publish-button"]');
    expect(await page.textContent('[data-testid="publish-result"]')).toMatch(/not JSON/);
    await page.close();
  });

  it("shows a round-trip time and latency in the health panel", async () => {
    const page = await openDemo("channels=t3.h&ping=500&health=500");
    const rtt = await waitFor("rtt", async () => {
      const t = (await page.textContent('[data-testid="rtt"]')) ?? "";
      return /^\d+(\.\d+)? ms$/.test(t) ? t : null;
    });
    expect(parseFloat(rtt)).toBeGreaterThanOrEqual(0); // a figure, whatever the machine's speed
    await server.publish(numbered("t3.h", "h", 1, 3));
    const p50 = await waitFor("latency p50", async () => {
      const t = (await page.textContent('[data-testid="latency-p50"]')) ?? "";
      return /^\d+(\.\d+)? ms$/.test(t) ? t : null;
    });
    expect(parseFloat(p50)).toBeGreaterThanOrEqual(0);
    expect(await page.textContent('[data-testid="offset"]')).toMatch(/ms$/);
    // The page reports its health to the server in health frames.
    await waitFor("health reports counted by the server", async () => {
      const m = await (await fetch(`${server.base}/v2/realtime/metrics`)).json();
      return m.healthReports >= 2;
    });
    await page.close();
  });

  it("shows every event exactly once when the server is killed and restarted", async () => {
    const page = await openDemo("channels=t4.a,t4.b&baseMs=500&capMs=2000&ping=1000");
    const expected: string[] = [];
    const publish = async (prefix: string, from: number, n: number) => {
      const evs = [...numbered("t4.a", prefix + "a", from, n), ...numbered("t4.b", prefix + "b", from, n)];
      await server.publish(evs);
      expected.push(...evs.map((e) => e.id));
    };

    await publish("before-", 1, 10);
    await waitFor("events before", async () => (await eventIds(page)).length === 20);

    await server.kill();
    await waitFor("page notices", async () => (await stateOf(page)) !== "open");
    // Hold the page off the network (Chromium's offline emulation) while the server comes
    // back on the same address and data dir and the "during" events are published, so they
    // can only reach the page by cursor recovery, never live.
    await browser.context.setOffline(true);
    await waitFor("page offline", async () => (await stateOf(page)) === "offline");
    await server.launch();
    await publish("during-", 1, 10);
    const stateDuring = await stateOf(page);
    await browser.context.setOffline(false);
    // These race with the page's resume: replay and live meet here.
    for (let i = 1; i <= 10; i++) await publish("racing-", i, 1);

    await waitFor("page back open", async () => (await stateOf(page)) === "open");
    await publish("after-", 1, 10);

    await waitFor("80 events", async () => (await eventIds(page)).length >= 80);
    await sleep(500); // a late duplicate would show up now
    const final = await eventIds(page);
    expect(new Set(final).size).toBe(final.length); // no duplicate
    expect(final.length).toBe(80);
    expect([...final].sort()).toEqual([...expected].sort()); // no gap
    // Per channel, events arrive in publish order.
    for (const ch of ["a", "b"]) {
      const mine = (id: string) => new RegExp(`^[a-z]+-${ch}-`).test(id);
      expect(final.filter(mine)).toEqual(expected.filter(mine));
    }
    const seqs = await page.$$eval('[data-testid="event"]', (els) => els.map((e) => Number((e as HTMLElement).dataset.seq)).reverse());
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]);
    expect(Number(await page.textContent('[data-testid="reconnects"]'))).toBeGreaterThanOrEqual(1);
    // The page resumed by cursor (recovered, no resync), it did not just happen to be live.
    expect(Number(await page.textContent('[data-testid="recoveries"]'))).toBeGreaterThanOrEqual(1);
    expect(await page.textContent('[data-testid="resyncs"]')).toBe("0");
    expect(stateDuring).toBe("offline");
    const metrics = await (await fetch(`${server.base}/v2/realtime/metrics`)).json();
    console.log(`kill/restart: server recoveries after restart ${JSON.stringify(metrics.recoveries)}; page recoveries=${await page.textContent('[data-testid="recoveries"]')} duplicates=${await page.textContent('[data-testid="duplicates"]')} resyncs=${await page.textContent('[data-testid="resyncs"]')}`);
  });

  it("pauses while the browser is offline and catches up once online", async () => {
    const page = await openDemo("channels=t5.a&baseMs=500&capMs=2000");
    await server.publish(numbered("t5.a", "on", 1, 3));
    await waitFor("first events", async () => (await eventIds(page)).length === 3);
    await browser.context.setOffline(true);
    await waitFor("state offline", async () => (await stateOf(page)) === "offline");
    await server.publish(numbered("t5.a", "off", 1, 5));
    await sleep(500);
    expect(await eventIds(page)).toHaveLength(3); // nothing arrives while offline
    await browser.context.setOffline(false);
    await waitFor("back open", async () => (await stateOf(page)) === "open");
    await waitFor("caught up", async () => (await eventIds(page)).length === 8);
    await sleep(300);
    expect(await eventIds(page)).toEqual(["on-1", "on-2", "on-3", "off-1", "off-2", "off-3", "off-4", "off-5"]);
    expect(await page.textContent('[data-testid="recoveries"]')).toBe("1");
    await page.close();
  });
});
