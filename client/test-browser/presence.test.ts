// Browser test: the demo page's presence list and "Load history", and the console's
// presence lookup, against the real realtimed (dev mode with -dev-mint, so two pages are
// two named users).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { axeViolations, Browser, openDemoPage, overflow, Server, sleep, stateOf, waitFor, watch } from "./harness.js";

let server: Server;
let browser: Browser;

beforeAll(async () => {
  server = await Server.start(["-dev-mint", "-presence-grace", "200ms"]);
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

async function token(user: string): Promise<string> {
  const r = await fetch(`${server.base}/v2/realtime/dev/token?user=${user}&channels=*`);
  return (await r.json()).token;
}

async function openAs(user: string, query: string): Promise<Page> {
  const page = await browser.page();
  await openDemoPage(page, server.base, `token=${await token(user)}&${query}`);
  await waitFor("state open", async () => (await stateOf(page)) === "open");
  return page;
}

const members = (page: Page) =>
  page.$$eval('[data-testid="presence-member"]', (els) => els.map((e) => (e as HTMLElement).dataset.user!).sort());

describe("demo page presence and history", () => {
  it("lists who is on the channel and loads its history", async () => {
    const ana = await openAs("ana", "channels=t9.room&presence=t9.room");
    await waitFor("ana listed", async () => (await members(ana)).join(",") === "ana");
    const bo = await openAs("bo", "channels=t9.room&presence=t9.room");
    await waitFor("bo on ana's page", async () => (await members(ana)).join(",") === "ana,bo");
    expect(await ana.textContent('[data-testid="presence-count"]')).toContain("2 users");
    await bo.close();
    await waitFor("bo gone from ana's page", async () => (await members(ana)).join(",") === "ana");

    await server.publish([1, 2, 3].map((n) => ({ channel: "t9.room", id: `h-${n}`, type: "n", data: { n } })));
    await waitFor("the events arrived", async () => ((await ana.textContent('[data-testid="events"]')) ?? "").includes("h-3"));
    await ana.click('[data-testid="history-button"]');
    const ids = await waitFor("history loaded", async () => {
      const got = await ana.$$eval('[data-testid="history-event"]', (els) => els.map((e) => (e as HTMLElement).dataset.id!));
      return got.length === 3 ? got : null;
    });
    expect(ids).toEqual(["h-1", "h-2", "h-3"]);
    expect(await ana.textContent('[data-testid="history-result"]')).toMatch(/3 events of t9.room from memory/);
    await ana.close();
  });

  it("the console's presence lookup lists them, at both widths", { timeout: 120_000 }, async () => {
    const cy = await openAs("cy", "channels=t9.lobby&presence=off");
    const dee = await openAs("dee", "channels=t9.lobby&presence=off");
    const page = await browser.page();
    const w = watch(page);
    await page.setViewportSize({ width: 1400, height: 900 });
    await page.goto(`${server.base}/dashboard`);
    await page.fill('[data-testid="login-key"]', "dev-admin-key-change-me"); // dev mode's admin key
    await page.click('[data-testid="login-button"]');
    await page.waitForSelector('[data-testid="presence-form"]');
    const lookedUp = await waitFor("cy and dee in the lookup", async () => {
      await page.fill('[data-testid="presence-channel"]', "t9.lobby");
      await Promise.all([page.waitForURL(/presence=t9\.lobby/), page.click('[data-testid="presence-button"]')]);
      const got = await members(page);
      return got.join(",") === "cy,dee" ? got : null;
    });
    expect(lookedUp).toEqual(["cy", "dee"]);
    expect(await page.textContent('[data-testid="presence-summary"]')).toMatch(/2 users/);
    for (const size of [{ width: 1400, height: 900 }, { width: 390, height: 844 }]) {
      await page.setViewportSize(size);
      await sleep(300);
      expect(await overflow(page), `console with a presence lookup at ${size.width} px: overflow`).toBeLessThanOrEqual(0);
      expect(await axeViolations(page), `console with a presence lookup at ${size.width} px`).toEqual([]);
    }
    w.stop();
    expect(w.problems).toEqual([]);
    await Promise.all([page.close(), cy.close(), dee.close()]);
  });
});
