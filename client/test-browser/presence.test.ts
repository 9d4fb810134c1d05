// Browser test: the demo page's presence list and "Load history" against the real
// realtimed (dev mode with -dev-mint, so two pages are two named users).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { Browser, openDemoPage, Server, stateOf, waitFor } from "./harness.js";

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
});
