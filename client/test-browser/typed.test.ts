// Browser test: the demo page's typed channel (realtime/channels.Notes, through the
// generated client/demo/channels.gen.ts) receives a typed event from the real realtimed,
// which checks typed payloads (-validate-payloads).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser, eventIds, openDemoPage, Server, stateOf, waitFor } from "./harness.js";

let server: Server;
let browser: Browser;

beforeAll(async () => {
  server = await Server.start(["-validate-payloads"]);
  browser = await Browser.launch();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (server) await server.cleanup();
});

describe("typed channel", () => {
  it("the demo page receives a Note on public.notes.<room>; a payload of the wrong shape is refused", async () => {
    const page = await browser.page();
    await openDemoPage(page, server.base, "room=r1&channels=typed.other");
    await waitFor("state open", async () => (await stateOf(page)) === "open");
    await waitFor("notes subscribed", () =>
      page.$$eval('[data-testid="log"] li', (els) => els.some((e) => /subscribed \S*public\.notes\.r1/.test(e.textContent ?? ""))),
    );

    // The server refuses a note that is not a Note (no text), so no page ever sees it.
    await expect(server.publish([{ channel: "public.notes.r1", id: "bad-1", data: { author: "ada" } }])).rejects.toThrow(
      /HTTP 400.*missing property 'text'/,
    );
    await server.publish([{ channel: "public.notes.r1", id: "note-1", type: "note", data: { author: "ada", text: "hello" } }]);
    await waitFor("the note", async () => (await eventIds(page)).includes("note-1"));
    const li = page.locator('[data-testid="event"][data-id="note-1"]');
    expect(await li.getAttribute("data-channel")).toBe("public.notes.r1");
    // The typed handler rendered ev.data.author and ev.data.text.
    expect(await li.locator(".data").textContent()).toBe("ada: hello");
    expect(await eventIds(page)).toEqual(["note-1"]);

    const metrics = await (await fetch(`${server.base}/v2/realtime/metrics`)).json();
    expect(metrics.publishRefusals.payload).toBe(1);
    await page.close();
  });
});
