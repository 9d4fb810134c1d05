// URLs of the stream and long-polling endpoints (docs/protocol.md).

/** defaultStreamUrl is ws(s)://<page host>/v2/realtime/stream; it throws outside a page. */
export function defaultStreamUrl(): string {
  const loc = (globalThis as any).location;
  if (!loc || !loc.host) throw new Error("RealtimeClient: options.url is required outside a page");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/v2/realtime/stream`;
}

/** withQuery appends query parameters (already encoded) to url. */
export function withQuery(url: string, params: string[]): string {
  if (params.length === 0) return url;
  return url + (url.includes("?") ? "&" : "?") + params.join("&");
}

/** streamUrl is the stream URL with the token, if any, as the `token` parameter. */
export function streamUrl(url: string | undefined, token: string | undefined): string {
  const base = url ?? defaultStreamUrl();
  return token ? withQuery(base, ["token=" + encodeURIComponent(token)]) : base;
}

/** pollBaseUrl is pollUrl, or the stream URL with http(s) and /poll instead of /stream. */
export function pollBaseUrl(url: string | undefined, pollUrl: string | undefined): string {
  if (pollUrl) return pollUrl;
  const u = url ?? defaultStreamUrl();
  return u.replace(/^ws(s?):/, "http$1:").replace(/\/stream(\?|$)/, "/poll$1");
}
