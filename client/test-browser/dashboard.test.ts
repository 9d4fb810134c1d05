// Browser test of the operations dashboard: with events flowing, its counters change
// without a reload. (The README's pictures come from layout.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Browser, openDemoPage, Server, stateOf, waitFor, sleep } from "./harness.js";

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

const text = async (page: import("playwright-core").Page, id: string) =>
  ((await page.textContent(`[data-testid="${id}"]`)) ?? "").trim();

describe("dashboard", () => {
  it("updates its counters live while events flow", { timeout: 120_000 }, async () => {
    // Two subscribed tabs make connections and deliveries to count.
    const tabs = [];
    for (const ch of ["dash.a", "dash.b"]) {
      const p = await browser.page();
      await openDemoPage(p, server.base, `channels=${ch}&ping=1000`);
      await waitFor("demo tab open", async () => (await stateOf(p)) === "open");
      tabs.push(p);
    }

    const page = await browser.page();
    await page.goto(`${server.base}/dashboard`);
    expect(await page.title()).toMatch(/realtime console/i);
    // The static snapshot is complete without JavaScript's help.
    for (const id of ["card-connections", "card-events", "card-latency-p99", "card-drops", "card-savings", "instance-table", "flag"]) {
      expect(await page.$(`[data-testid="${id}"]`), id).not.toBeNull();
    }
    await page.evaluate(() => ((window as any).__notReloaded = true));
    const before = { events: await text(page, "card-events-value"), at: await text(page, "generated-at") };

    let n = 0;
    let stop = false;
    const publishing = (async () => {
      const until = Date.now() + 70_000;
      while (Date.now() < until && !stop) {
        const evs = Array.from({ length: 20 }, (_, i) => ({ channel: i % 2 ? "dash.a" : "dash.b", id: `d-${n}-${i}`, data: { i } }));
        n++;
        await server.publish(evs);
        await sleep(100);
      }
    })();
    try {
      const after = await waitFor(
        "live counters",
        async () => {
          const conns = await text(page, "card-connections-value");
          const events = await text(page, "card-events-value");
          return conns === "2" && events !== before.events && events !== "0" ? { conns, events } : null;
        },
      );
      expect(after.conns).toBe("2");
      expect(await text(page, "generated-at")).not.toBe(before.at);
      expect(await page.evaluate(() => (window as any).__notReloaded)).toBe(true);
      expect(await page.$('[data-testid="instance-row"]')).not.toBeNull();
      const out = join(mkdtempSync(join(tmpdir(), "dash-")), "dashboard.png");
      await page.setViewportSize({ width: 1280, height: 1100 });
      await page.screenshot({ path: out, fullPage: false });
      console.log(`dashboard screenshot: ${out}`);
    } finally {
      stop = true;
      await publishing;
    }
    for (const p of [...tabs, page]) await p.close();
  });
});
