// The React bindings in Chromium against the real realtimed: RealtimeProvider,
// useChannel (subscribe on mount, unsubscribe on unmount), useConnectionHealth and
// usePresence.
import { build } from "esbuild";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Browser, Server, sleep, waitFor } from "./harness.js";

let server: Server;
let browser: Browser;
let bundle: string;

beforeAll(async () => {
  const out = await build({
    entryPoints: [new URL("./react-page.tsx", import.meta.url).pathname],
    bundle: true,
    write: false,
    format: "esm",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"development"' },
    logLevel: "warning",
  });
  bundle = out.outputFiles[0].text;
  server = await Server.start();
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

it("RealtimeProvider, useChannel and useConnectionHealth work against the server", async () => {
  const page = await browser.page();
  // Serve the test page from the server's origin (the stream checks origins) without
  // adding test routes to the server: the browser never asks realtimed for these URLs.
  await page.route(`${server.base}/__react/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path.endsWith(".js")) return route.fulfill({ contentType: "text/javascript", body: bundle });
    return route.fulfill({
      contentType: "text/html",
      body: '<!doctype html><div id="root"></div><script type="module" src="/__react/page.js"></script>',
    });
  });
  await page.goto(`${server.base}/__react/index.html`);
  await waitFor("react state open", async () => (await page.textContent('[data-testid="react-state"]')) === "open");
  await waitFor("react rtt", async () => /^\d+$/.test((await page.textContent('[data-testid="react-rtt"]')) ?? ""));
  await waitFor("both channels subscribed", async () =>
    page.evaluate(() => ["r.one", "r.two"].every((c) => (window as any).subscribed.includes(c))),
  );
  await server.publish([
    { channel: "r.one", id: "one-1" },
    { channel: "r.two", id: "two-1" },
  ]);
  await waitFor("both feeds", async () => (await page.$$('[data-testid="react-event"]')).length === 2);
  // usePresence got its first snapshot (anonymous pages are no listed users).
  await waitFor("presence ready", async () => (await page.getAttribute('[data-testid="react-presence"]', "data-ready")) === "true");
  expect(await page.$$eval('[data-testid="feed-r.one"] li', (l) => l.map((e) => e.textContent))).toEqual(["one-1"]);

  // Unmounting the r.one feed unsubscribes the channel (StrictMode's double effects included).
  await page.click('[data-testid="toggle"]');
  await waitFor("r.one unsubscribed", async () =>
    page.evaluate(() => JSON.stringify((window as any).reactClient.channels) === '["r.two"]'),
  );
  await sleep(1000); // the unsubscribe frame reaches the server
  await server.publish([
    { channel: "r.one", id: "one-2" },
    { channel: "r.two", id: "two-2" },
  ]);
  await waitFor("two-2", async () => (await page.$('[data-id="two-2"]')) !== null);
  await sleep(300);
  expect(await page.$('[data-id="one-2"]')).toBeNull();
  await waitFor("received count", async () => (await page.textContent('[data-testid="react-received"]')) === "3");
  await page.close();
});
