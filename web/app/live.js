// A subscription a page keeps open: GraphQL over Server-Sent Events, the graphql-sse
// protocol's "distinct connections" mode (gateway/http/sse.py). POST /graphql of this
// origin with the session cookie, `Accept: text/event-stream` and the registered document
// named by its `documentId` (a cookie session may run registered documents only); each
// `event: next` carries one result, `event: complete` ends the stream, `:` lines are
// heartbeats. The last event's cursor is kept: a dropped stream is opened again after a
// growing pause with `since` = that cursor, so nothing is lost or repeated.
import { documentHash, documentText } from "./api.js";

const ENDPOINT = "/graphql";
const SESSION_ENDED = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED", "SESSION_REVOKED"]);
// Refusals worth trying again after a pause; any other is final.
const TRANSIENT = new Set([
  "NETWORK_ERROR",
  "SERVICE_UNAVAILABLE",
  "RATE_LIMITED",
  "TOO_MANY_SUBSCRIPTIONS",
  "SLOW_CONSUMER",
  "STREAM_ENDED",
]);
const FIRST_PAUSE_MS = 1000;
const LONGEST_PAUSE_MS = 60_000;
// The gateway sends a heartbeat every 15 s by default: a stream silent this long is gone.
const SILENCE_MS = 60_000;
const MAX_EVENT_CHARS = 4 << 20;

/**
 * Keep the subscription `name` (web/documents/<name>.graphql, with the variable `since`)
 * open until `stop()`. Handlers: `onOpen({ resumed })` — the stream is open (`resumed`:
 * after a cursor, nothing missed; otherwise from now); `onData(data)` — each result's data;
 * `onEnd(code)` — stopped for good (the session ended: UNAUTHENTICATED, TOKEN_EXPIRED,
 * SESSION_REVOKED; or another final refusal's code). Returns `{ stop, tried }`: `tried`
 * settles when the first attempt has opened the stream (true) or failed (false).
 */
export function subscribe(name, handlers) {
  const stream = new Stream(name, handlers);
  const tried = new Promise((resolve) => (stream.tried = resolve));
  stream.connect();
  const online = () => stream.retryNow();
  window.addEventListener("online", online);
  const stop = () => {
    window.removeEventListener("online", online);
    stream.stop();
  };
  return { stop, tried };
}

class Stream {
  constructor(name, handlers) {
    this.name = name;
    this.handlers = handlers;
    this.cursor = undefined;
    this.pause = FIRST_PAUSE_MS;
    this.stopped = false;
    this.controller = undefined;
    this.retry = undefined;
    this.tried = () => {};
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    this.controller?.abort();
  }

  /** Back online while waiting to reconnect: do not wait any longer. */
  retryNow() {
    if (this.retry === undefined || this.stopped) return;
    clearTimeout(this.retry);
    this.retry = undefined;
    this.connect();
  }

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    let code;
    try {
      code = await this.run(controller);
    } catch {
      code = "NETWORK_ERROR"; // the network, a cut or silent stream, or stop()
    } finally {
      controller.abort();
    }
    this.tried(false);
    if (this.stopped) return;
    if (code === "CURSOR_EXPIRED") {
      this.cursor = undefined; // too old to resume: from now (the page reads afresh)
      code = "STREAM_ENDED";
    }
    if (!TRANSIENT.has(code)) {
      this.stopped = true;
      this.handlers.onEnd(code);
      return;
    }
    const wait = this.pause * (0.5 + Math.random() / 2);
    this.pause = Math.min(this.pause * 2, LONGEST_PAUSE_MS);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect();
    }, wait);
  }

  /** One stream, from the request to its end; the code of why it ended. */
  async run(controller) {
    const since = this.cursor;
    const response = await fetch(ENDPOINT, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(await requestBody(this.name, { since: since ?? null })),
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) return refusalCode(response);
    this.tried(true);
    this.handlers.onOpen({ resumed: since !== undefined });
    let silence;
    const alive = () => {
      clearTimeout(silence);
      silence = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    alive();
    try {
      for await (const event of serverEvents(response.body.getReader(), alive)) {
        if (event === HEARTBEAT) {
          this.pause = FIRST_PAUSE_MS; // a healthy stream: the next drop starts over
        } else if (event.type === "complete") {
          return "STREAM_ENDED";
        } else if (event.type === "next") {
          const ended = this.result(JSON.parse(event.data));
          if (ended) return ended;
        }
      }
    } finally {
      clearTimeout(silence);
    }
    return "STREAM_ENDED"; // cut without `complete`
  }

  /** Hand a result's data on and keep its cursor; an error ending the stream: its code. */
  result(result) {
    const data = result.data;
    if (data) {
      const root = Object.values(data)[0];
      if (root && root.cursor) this.cursor = root.cursor;
      this.pause = FIRST_PAUSE_MS;
      this.handlers.onData(data);
      return undefined;
    }
    const errors = result.errors || [];
    return errors.length > 0 ? errors[0].extensions?.code || "STREAM_ENDED" : undefined;
  }
}

/** The request naming a registered document by its id (the text if it is not listed). */
async function requestBody(name, variables) {
  const hash = await documentHash(name);
  if (hash) return { operationName: name, variables, documentId: `sha256:${hash}` };
  return { operationName: name, variables, query: await documentText(name) };
}

/** Why the gateway answered with JSON instead of a stream: the first error's code. */
async function refusalCode(response) {
  let code;
  try {
    code = (await response.json()).errors?.[0]?.extensions?.code;
  } catch {
    code = undefined;
  }
  if (code) return code;
  if (response.status === 401) return "UNAUTHENTICATED";
  return response.status >= 500 || response.status === 429 ? "SERVICE_UNAVAILABLE" : "REFUSED";
}

const HEARTBEAT = Symbol("heartbeat");

/**
 * The events of a `text/event-stream` body as they arrive: `{ type, data }`, or HEARTBEAT
 * for a block of comments only. `onChunk` is called for every chunk read.
 */
async function* serverEvents(reader, onChunk) {
  const decoder = new TextDecoder();
  let buffer = "";
  let carry = ""; // a "\r" at a chunk's end: its "\n" may be in the next one
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    let text = carry + decoder.decode(value, { stream: true });
    carry = text.endsWith("\r") ? "\r" : "";
    if (carry) text = text.slice(0, -1);
    buffer += text.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      yield parseBlock(block);
    }
    if (buffer.length > MAX_EVENT_CHARS) throw new Error("event too large");
  }
}

function parseBlock(block) {
  let type = "message";
  const data = [];
  let fields = 0;
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    fields += 1;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return fields === 0 ? HEARTBEAT : { type, data: data.join("\n") };
}
