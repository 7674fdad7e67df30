/**
 * The SDK's Server-Sent Events transport: `GET /sse` read with `fetch` and a streaming body (so the token goes in
 * `Authorization`, never in the URL, and the cursor in `Last-Event-ID`), and frames sent with `POST /sse/send`.
 * It looks like a WebSocket to the client (readyState, send, close and the on* handlers), so reconnects, the
 * queue and the channel handles work the same on both transports. No dependency: browsers and Node ≥ 20.
 */

/** One event of a `text/event-stream`: its data, and the stream's last event id when it dispatched. */
export interface StreamEvent {
  data: string;
  /** The last `id:` seen on the stream, this event's or an earlier one's (what `Last-Event-ID` resends); undefined before any. */
  id: string | undefined;
}

/**
 * An incremental `text/event-stream` parser (the WHATWG "event stream interpretation"): lines end with CRLF, LF
 * or CR (also split across chunks), `:` starts a comment, `data:` lines join with `\n`, `id:` (without NUL) sets
 * the last event id (kept for later events, and set even by a block without data), a blank line dispatches, an
 * event without data is dropped. `event:` and `retry:` are read and
 * ignored: the gateway's events are unnamed, and the SDK has its own reconnect policy.
 */
export class EventStreamParser {
  private buffer = '';
  private afterCR = false;
  private data: string[] = [];
  /** The last event id buffer: '' when the stream set it empty (then nothing is resent). */
  lastEventId: string | undefined;
  private started = false;

  constructor(private readonly dispatch: (event: StreamEvent) => void) {}

  /** Feeds decoded text (any split). */
  push(text: string): void {
    if (!this.started) {
      if (text.length === 0) return;
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 && this.afterCR) {
        // The LF of a CRLF whose CR ended the previous chunk (or line).
        this.afterCR = false;
        start = i + 1;
        continue;
      }
      this.afterCR = false;
      if (c === 10 || c === 13) {
        this.line(this.buffer + text.slice(start, i));
        this.buffer = '';
        this.afterCR = c === 13;
        start = i + 1;
      }
    }
    this.buffer += text.slice(start);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.dispatch({ data: this.data.join('\n'), id: this.lastEventId });
      this.data = [];
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment (the server's keep-alive)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
  }
}

/** What the transport needs of `fetch` (the global one in browsers and Node ≥ 18, or one passed in options). */
export type FetchFunction = (
  url: string,
  init: { method?: string; headers: Record<string, string>; body?: string; cache?: string; signal?: AbortSignal },
) => Promise<FetchResponse>;
export interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  body?: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(reason?: unknown): Promise<void> } } | null;
}

/** The stream could not start: the HTTP answer (a refusal with the gateway's JSON body, or anything else). */
export interface StreamRefusal {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

/** The first frame of a stream: its session (to name in `POST /sse/send`) and the channels it holds, with positions. */
export interface StreamWelcome {
  type: 'welcome';
  session: string;
  channels: Record<string, { epoch?: string; id?: string }>;
}

export interface EventStreamOptions {
  /** The `GET /sse?channel=..` URL (http or https). */
  url: string;
  /** The `POST /sse/send` URL. */
  sendUrl: string;
  token: string;
  /** Sent as `Last-Event-ID`: the cursor of the previous stream, whose channels the server resumes. */
  lastEventId: string | undefined;
  fetch: FetchFunction;
  /** No byte (the server comments every 15 s) for this long: the link is dead; closed as 1006. */
  idleMs: number;
}

/** Nothing answered the send, or the session is gone: the frames were not handled, the stream is ending. */
export interface UnsentFrames {
  texts: string[];
}

/**
 * One SSE session. readyState: 0 until the welcome arrives (then onopen with it, then onmessage with it), 1
 * while the stream runs, 3 once closed (onclose, exactly once). A `{"type":"reconnect"}` frame closes it as 1012
 * (drain), a `{"type":"close"}` frame with its code and reason, the end of the body or a network error as 1006.
 * send() posts frames one after another, in order (consecutive subscribes side by side); answers come on the stream.
 */
export class EventStream {
  readyState = 0;
  onopen: ((welcome: StreamWelcome) => void) | null = null;
  onmessage: ((event: { data: string; id: string | undefined }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** The stream was refused before it started (any status but 200 with `text/event-stream`). */
  onrefused: ((refusal: StreamRefusal) => void) | null = null;
  /**
   * Frames not handled (404 unknown_session, no answer, 401/403 before the stream's own close), in the order they
   * were sent: once one is, every later send of this stream is too, unsent, so none overtakes another.
   */
  onunsent: ((frames: UnsentFrames) => void) | null = null;
  /** A POST the server refused for the frame (413 too_large, 400, 503 unavailable, …): what an error frame would say. */
  onrejected: ((frame: Record<string, unknown>, status: number, body: string) => void) | null = null;

  private readonly abort = new AbortController();
  private session: string | undefined;
  /** Every send so far has been posted (and answered) once this settles. */
  private sending: Promise<void> = Promise.resolve();
  /** Consecutive subscribes: posted side by side, all after what came before them. */
  private subscribes: { after: Promise<void>; posts: Promise<void>[] } | undefined;
  private idle: ReturnType<typeof setTimeout> | undefined;
  private ended = false;
  /** A send was not handled: the rest wait for the next stream. */
  private broken = false;
  private parser: EventStreamParser | undefined;

  constructor(private readonly options: EventStreamOptions) {
    void this.run();
  }

  /** Posts one text frame (a JSON object; a plain `ping` is sent as `{"type":"ping"}`). */
  send(text: string): void {
    if (this.readyState !== 1) throw new Error('the event stream is not open');
    let frame: unknown;
    try {
      frame = text === 'ping' ? { type: 'ping' } : JSON.parse(text);
    } catch {
      frame = undefined;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      this.onrejected?.({}, 400, JSON.stringify({ error: 'invalid_json', message: 'frames sent over SSE must be JSON objects' }));
      return;
    }
    const session = this.session!;
    const post = () => this.post(session, frame as Record<string, unknown>, text);
    if ((frame as { type?: unknown }).type === 'subscribe') {
      // Subscribes commute (a reconnect re-subscribes every channel at once): side by side, not one round trip
      // each. Whatever comes next (a publish needing them, an unsubscribe) waits for all of them.
      this.subscribes ??= { after: this.sending, posts: [] };
      this.subscribes.posts.push(this.subscribes.after.then(post));
      this.sending = Promise.all(this.subscribes.posts).then(() => undefined);
      return;
    }
    this.subscribes = undefined;
    this.sending = this.sending.then(post);
  }

  /** The stream's last event id (the cursor to resume from), undefined before any. */
  get lastEventId(): string | undefined {
    return this.parser?.lastEventId;
  }

  close(code = 1000, reason = ''): void {
    this.finish(code, reason);
  }

  private async run(): Promise<void> {
    const headers: Record<string, string> = { Accept: 'text/event-stream', Authorization: `Bearer ${this.options.token}` };
    if (this.options.lastEventId !== undefined) headers['Last-Event-ID'] = this.options.lastEventId;
    this.watch();
    let res: FetchResponse;
    try {
      res = await this.options.fetch(this.options.url, { headers, cache: 'no-store', signal: this.abort.signal });
    } catch {
      return this.finish(1006, '');
    }
    if (this.ended) return;
    const type = res.headers.get('content-type') ?? '';
    if (res.status !== 200 || !type.startsWith('text/event-stream') || !res.body) {
      let body = '';
      try {
        body = await res.text();
      } catch {
        // the refusal without its body: the status alone
      }
      if (this.ended) return;
      this.onrefused?.({ status: res.status, body, retryAfter: res.headers.get('retry-after') ?? undefined });
      return this.finish(1006, '');
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const parser = (this.parser = new EventStreamParser((event) => this.event(event)));
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (this.ended) break;
        if (done) return this.finish(1006, 'the event stream ended');
        this.watch();
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      this.finish(1006, '');
    } finally {
      if (this.ended) reader.cancel().catch(() => undefined);
    }
  }

  private event({ data, id }: StreamEvent): void {
    if (this.ended) return;
    let frame: { type?: unknown; session?: unknown; code?: unknown; reason?: unknown } | undefined;
    try {
      frame = JSON.parse(data);
    } catch {
      frame = undefined;
    }
    if (this.readyState === 0 && frame?.type !== 'reconnect' && frame?.type !== 'close') {
      // A draining node answers a new stream with a reconnect (or close) and no welcome; nothing else counts before it.
      if (frame?.type !== 'welcome' || typeof frame.session !== 'string') return;
      this.session = frame.session;
      this.readyState = 1;
      this.onopen?.(frame as StreamWelcome);
      if (this.ended) return;
    }
    this.onmessage?.({ data, id });
    if (frame?.type === 'reconnect') this.finish(1012, 'server restarting');
    else if (frame?.type === 'close') this.finish(typeof frame.code === 'number' ? frame.code : 1006, typeof frame.reason === 'string' ? frame.reason : '');
  }

  private async post(session: string, frame: Record<string, unknown>, text: string): Promise<void> {
    if (this.ended || this.broken) return this.onunsent?.({ texts: [text] });
    let status = 0;
    let body = '';
    try {
      const res = await this.options.fetch(this.options.sendUrl, {
        method: 'POST',
        headers: { Authorization: `Bearer ${this.options.token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ session, frame }),
        // No `cache: 'no-store'`: Chromium then skips its CORS preflight cache, one OPTIONS per frame.
      });
      status = res.status;
      body = await res.text().catch(() => '');
    } catch {
      status = 0;
    }
    if (status === 202) return;
    if (status !== 0 && status !== 401 && status !== 403 && status !== 404) return this.onrejected?.(frame, status, body);
    // Not handled: the session is gone (404), nothing answered, or the token is refused now (the stream gets
    // its own close, 4001 or 4003). The frame and every later one wait for the next stream; a stream the server
    // no longer knows (or that nothing answers for) is closed here so that the next one starts.
    this.broken = true;
    this.onunsent?.({ texts: [text] });
    if (status === 404 || status === 0) this.finish(1006, status === 404 ? 'the server no longer knows this stream' : 'a send got no answer');
  }

  /** Resets the dead-link timer: any byte, comments included, shows the stream is alive. */
  private watch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.finish(1006, 'no data on the event stream'), this.options.idleMs);
  }

  private finish(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.readyState = 3;
    clearTimeout(this.idle);
    this.abort.abort();
    // Asynchronously, as a WebSocket's close event: the caller of close() finishes first.
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }
}
