// A CommonJS consumer (module nodenext, .cts): these imports compile to require().
import { CloseCode, RealtimeClient, TRANSITIONS, type ConnectionState, type RealtimeEvent } from "@encore-realtime/client";
import { RealtimeProvider, useChannel } from "@encore-realtime/client/react";
import rt = require("@encore-realtime/client"); // the form verbatimModuleSyntax asks for

const client = new RealtimeClient({ url: "ws://127.0.0.1:9/v2/realtime/stream" });
const state: ConnectionState = client.state;
const next: ConnectionState | undefined = TRANSITIONS[state].connect;
const code: 4300 = CloseCode.UsePoll;
client.subscribe<{ id: number }>("orders", (ev: RealtimeEvent<{ id: number }>) => ev.data?.id);
export const used = [next, code, RealtimeProvider, useChannel, rt.actionFor(code) === "use-poll"];
