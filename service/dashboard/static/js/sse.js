// Live events (Server-Sent Events) read with fetch(): EventSource cannot send the Authorization
// header the API may need, so the stream is read from the response body and parsed here. A
// dropped stream is taken up again from the last event id (Last-Event-ID); a stream that cannot
// be had (an HTTP error, a proxy that buffers, too many drops) hands over to `fallback`, which
// polls as the pages always did.
import { getToken } from "./api.js";
import { track } from "./poll.js";

// Parse a stream's text as it arrives: `feed` each chunk, `onEvent({event, data, id})` for each
// event once its blank line is in. Comment lines (the keep-alive) are skipped.
export function parser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  return function feed(text) {
    buffer += text;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id });
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
  };
}

const RETRIES = 3; // drops in a row before falling back to polling

// Follow `path`: `handlers[event](data, id)` for each event (data parsed from JSON) until the
// stream ends with `over()` true (a server that stops ends streams too: then it is taken up
// again), or `fallback()` once it cannot be followed. Stopped with the page (poll.js stopAll) or
// by the returned handle's stop().
export function follow(path, handlers, { fallback, over = () => true } = {}) {
  const controller = new AbortController();
  const handle = { stop: () => controller.abort() };
  track(handle);
  let lastId = null;
  (async () => {
    let drops = 0;
    while (!controller.signal.aborted) {
      const headers = { Accept: "text/event-stream" };
      const token = getToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      let response;
      try {
        response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
      } catch (err) {
        if (controller.signal.aborted) return;
        if (++drops > RETRIES) break;
        await new Promise((r) => setTimeout(r, 500 * 2 ** drops));
        continue;
      }
      const type = response.headers.get("content-type") || "";
      if (!response.ok || !response.body || !type.startsWith("text/event-stream")) break;
      const feed = parser((e) => {
        drops = 0;
        if (e.id !== null) lastId = e.id;
        const handler = handlers[e.event];
        if (handler) handler(JSON.parse(e.data), e.id);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
        if (over()) return; // the run (or the group) is over
      } catch (err) {
        if (controller.signal.aborted) return;
      }
      if (++drops > RETRIES) break;
      await new Promise((r) => setTimeout(r, 500 * 2 ** drops));
    }
    if (!controller.signal.aborted && fallback) fallback();
  })();
  return handle;
}
