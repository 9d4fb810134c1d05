// Browser tests of the operator console (/dashboard) and the demo page at 1400 and
// 390 px: no horizontal scroll, no console errors, no failed requests, no serious or
// critical accessibility violation (axe-core), and the console's admin flow (sign in,
// inspect a connection, publish a test event). With UPDATE_SCREENSHOTS=1 it lets the
// charts fill and writes docs/console-1400.png, docs/console-390.png,
// docs/demo-1400.png and docs/demo-390.png (shown in the README).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { execFileSync } from "node:child_process";
import { axeViolations, Browser, openDemoPage, overflow, realtimedBinary, repoRoot, Server, stateOf, waitFor, watch, sleep } from "./harness.js";

const update = process.env.UPDATE_SCREENSHOTS === "1";
const shotDir = update ? join(repoRoot, "docs") : mkdtempSync(join(tmpdir(), "layout-"));
const WIDTHS = [
  { width: 1400, height: 900 },
  { width: 390, height: 844 },
];
const ADMIN_KEY = "dev-admin-key-change-me"; // dev mode: the server runs without -admin-key

let server: Server;
let browser: Browser;
let stop = false;
let publishing: Promise<void>;
const tabs: Page[] = [];

beforeAll(async () => {
  server = await Server.start();
  browser = await Browser.launch();
  // Two demo tabs (one with a long channel name) and steady traffic to show.
  for (const ch of ["orders.eu-west", "notifications.user-42.inbox"]) {
    const p = await browser.page();
    await openDemoPage(p, server.base, `channels=${ch}&ping=1000`);
    await waitFor("demo tab open", async () => (await stateOf(p)) === "open");
    tabs.push(p);
  }
  let n = 0;
  publishing = (async () => {
    while (!stop) {
      const evs = Array.from({ length: 5 }, (_, i) => ({
        channel: i % 2 ? "orders.eu-west" : "notifications.user-42.inbox",
        id: `evt-${Date.now().toString(36)}-${n}-${i}-0123456789`,
        type: i % 2 ? "order.created" : "message",
        data: { n, i, text: "a payload long enough to wrap on a phone screen, with some more words" },
      }));
      n++;
      await server.publish(evs).catch(() => {});
      await sleep(250);
    }
  })();
  // Long enough for a first health report from each tab (3 s after welcome) and, for the
  // README pictures, for the charts to show a minute of traffic.
  await sleep(update ? 70_000 : 6_000);
}, 300_000);

afterAll(async () => {
  stop = true;
  await publishing;
  await browser?.close();
  if (server) await server.cleanup();
});

/** fitsNarrowest checks the smallest width the pages promise: 360 px, no sideways scroll. */
async function fitsNarrowest(page: Page, what: string): Promise<void> {
  await page.setViewportSize({ width: 360, height: 740 });
  await sleep(300);
  expect(await overflow(page), `${what} at 360 px: horizontal overflow (px)`).toBeLessThanOrEqual(0);
}

async function check(page: Page, what: string): Promise<void> {
  expect(await overflow(page), `${what}: horizontal overflow (px)`).toBeLessThanOrEqual(0);
  expect(await axeViolations(page), `${what}: accessibility`).toEqual([]);
}

describe("console and demo page at two widths", () => {
  it("demo page: fits, shows event data at 390 px, accessible, no errors", { timeout: 120_000 }, async () => {
    const page = tabs[0];
    const w = watch(page);
    await page.reload(); // watched from the first request on (before the console's screenshots load the machine)
    await waitFor("demo tab open", async () => (await stateOf(page)) === "open");
    await waitFor("events", async () => (await page.$$('[data-testid="event"]')).length >= 3);
    await sleep(update ? 8_000 : 500); // past the reconnect's first samples, for the pictures
    for (const size of WIDTHS) {
      await page.setViewportSize(size);
      await sleep(300);
      await check(page, `demo ${size.width}`);
      // Every cell of an event stays in its row: the id does not run into the data, and
      // the data is on screen.
      const geo = await page.$eval('[data-testid="event"]', (li) => {
        const box = (c: string) => li.querySelector(`.${c}`)!.getBoundingClientRect();
        const id = li.querySelector(".id") as HTMLElement;
        return { id: box("id"), data: box("data"), li: li.getBoundingClientRect(), idFits: id.scrollWidth <= id.clientWidth || getComputedStyle(id).textOverflow === "ellipsis" };
      });
      expect(geo.data.width, `demo ${size.width}: data column width`).toBeGreaterThan(100);
      expect(geo.data.right).toBeLessThanOrEqual(geo.li.right + 0.5);
      expect(geo.idFits).toBe(true);
      if (size.width > 640) expect(geo.id.right).toBeLessThanOrEqual(geo.data.left);
      else expect(geo.data.top).toBeGreaterThanOrEqual(geo.id.bottom - 0.5);
      await page.screenshot({ path: join(shotDir, `demo-${size.width}.png`), fullPage: size.width < 1000 });
    }
    await fitsNarrowest(page, "demo");
    w.stop();
    expect(w.problems).toEqual([]);
  });

  it("console: sign in, inspect, publish; fits, accessible, no errors", { timeout: 120_000 }, async () => {
    const page = await browser.page();
    const w = watch(page);
    await page.setViewportSize(WIDTHS[0]);
    await page.goto(`${server.base}/dashboard`);
    // Server-side latency at once, browsers' after their first report: the cards show ms.
    await waitFor("latency card", async () => /ms$/.test((await page.textContent('[data-testid="card-latency-p99-value"]')) ?? ""));
    await check(page, "console signed out 1400");

    // Sign in with the flags admin key; the session cookie opens the admin panels.
    await page.fill('[data-testid="login-key"]', ADMIN_KEY);
    await page.click('[data-testid="login-button"]');
    await page.waitForSelector('[data-testid="inspector"]');
    await waitFor("busiest channels", async () => (await page.$$('[data-testid="channel-row"]')).length >= 2, 20_000);
    const session = ((await tabs[0].textContent('[data-testid="session"]')) ?? "").trim();
    await page.fill('[data-testid="inspect-user"]', session);
    await page.click('[data-testid="inspect-button"]');
    await page.waitForSelector('[data-testid="inspect-row"]');
    expect(await page.textContent('[data-testid="inspect-summary"]')).toMatch(/^1 connection on 1 instance answering/);
    expect(await page.textContent('[data-testid="inspect-rtt"]')).toMatch(/ms$/);

    // A test event from the publish box reaches the demo tab (the lookup stays shown).
    await page.fill('[data-testid="publish-channel"]', "orders.eu-west");
    await page.fill('[data-testid="publish-type"]', "console.test");
    await page.click('[data-testid="publish-button"]');
    await page.waitForSelector('[data-testid="publish-result"]');
    expect(await page.textContent('[data-testid="publish-result"]')).toMatch(/^Published to orders\.eu-west at sequence \d+\.$/);
    await waitFor("test event on the demo tab", async () => ((await tabs[0].textContent('[data-testid="events"]')) ?? "").includes("console.test"));
    expect(await page.$('[data-testid="inspect-row"]')).not.toBeNull();

    // The live region keeps updating while signed in (channels included).
    await waitFor("live updates", async () => Number((await page.getAttribute("body", "data-updates")) ?? 0) >= 1);
    // Range switch without a reload.
    await page.click('[data-testid="range-1h"]');
    await waitFor("1 h range", async () => ((await page.textContent('[data-testid="chart-latency"] .xaxis')) ?? "").includes("1 h ago"));
    await page.click('[data-testid="range-5m"]');
    await waitFor("5 min range", async () => ((await page.textContent('[data-testid="chart-latency"] .xaxis')) ?? "").includes("5 min ago"));

    for (const size of WIDTHS) {
      await page.setViewportSize(size);
      await sleep(300);
      await check(page, `console ${size.width}`);
      await page.screenshot({ path: join(shotDir, `console-${size.width}.png`), fullPage: true });
    }
    await fitsNarrowest(page, "console");
    console.log(`console screenshots in ${shotDir}`);
    w.stop();
    expect(w.problems).toEqual([]);
    await page.close();
  });

  it("demo page works on a keyed server with a token from its form or ?token=", { timeout: 120_000 }, async () => {
    const keys = "k1:" + "ab12".repeat(16);
    const publisherKey = "pk-" + "cd34".repeat(8);
    // A keyed server has every key (token, publisher, admin) or refuses to start.
    const keyed = await Server.start(["-token-keys", keys, "-publisher-key", publisherKey, "-admin-key", "ak-" + "ef56".repeat(8)]);
    try {
      const token = execFileSync(realtimedBinary(), ["token", "-keys", keys, "-user", "42", "-channels", "orders.*"], { encoding: "utf8" }).trim();
      const page = await browser.page();
      // Without a token the keyed server refuses, and the page says what it needs.
      await openDemoPage(page, keyed.base, "channels=orders.a");
      await waitFor("token asked for", async () => /wants a token/.test((await page.textContent('[data-testid="token-status"]')) ?? ""), 30_000);
      // The token form reconnects with the token (?token=), and events arrive.
      await page.fill('[data-testid="token-input"]', token);
      await Promise.all([page.waitForURL(/token=/), page.click('[data-testid="token-button"]')]);
      await waitFor("state open with the token", async () => (await stateOf(page)) === "open", 30_000);
      await waitFor("subscribed", async () => ((await page.textContent('[data-testid="log"]')) ?? "").includes("subscribed orders.a"));
      await keyed.publish([{ channel: "orders.a", id: "keyed-1", data: { ok: true } }], publisherKey);
      await waitFor("event with the token", async () => (await page.$$('[data-testid="event"]')).length === 1);
      await page.close();
    } finally {
      await keyed.cleanup();
    }
  });
});
