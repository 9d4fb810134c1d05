// An ES module consumer (module nodenext, .mts).
import { CloseCode, RealtimeClient, type ConnectionState } from "@encore-realtime/client";
import { useConnectionHealth } from "@encore-realtime/client/react";

const client = new RealtimeClient({ url: "ws://127.0.0.1:9/v2/realtime/stream" });
const state: ConnectionState = client.state;
export const used = [state, CloseCode.Normal, useConnectionHealth];
