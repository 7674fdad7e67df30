import { backoffDelay, RESTART_JITTER_MS, type BackoffOptions } from './backoff';
import { ChannelSubscription, type ChannelFrame, type ChannelLink, type Position, type SubscribedFrame, type SubscribeOptions } from './channel-subscription';
import { Emitter } from './emitter';
import { DISCONNECTED_CLOSE_CODE, FATAL_CLOSE_CODES, FATAL_HTTP_STATUSES, GatewayError } from './errors';
import { EventStream, type FetchFunction, type StreamWelcome } from './event-stream';

export type { Position } from './channel-subscription';

/** The subset of the WebSocket API the client uses: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  /** `ws` only: the HTTP answer of a refused upgrade (browsers hide it). */
  on?(event: 'unexpected-response', listener: (req: unknown, res: { statusCode?: number; headers: Record<string, unknown>; on(e: string, l: (chunk: unknown) => void): void }) => void): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface AlertFrame {
  type: 'alert';
  /** Absent on live-only alerts (published without history): those cannot be resumed from. */
  id?: string;
  /** `user:<sub>` on personal alerts; absent on the `alerts` broadcast. */
  channel?: string;
  data: Record<string, unknown>;
  ts: number;
  /** The alert asks for acknowledgement: `client.ack(alert.id, alert.channel)` (or `autoAck`). */
  ack?: true;
  /** An escalation's copy of an alert not acknowledged in time: the same id and ts, not a new position. */
  redelivered?: true;
}

/**
 * The first frame of an alerts or chat connection: each history channel's epoch, and the id after which
 * everything reaches this connection. Alerts connections carry their personal channel as `user_*`.
 */
export interface WelcomeFrame {
  type: 'welcome';
  epoch: string;
  id: string;
  user_epoch?: string;
  user_id?: string;
}

/** Chat frames (`/ws/chat/:room`). */
export type ChatFrame =
  | { type: 'message'; id: string; user: string; message: string; ts: number }
  | { type: 'publication'; channel: string; id?: string; data: Record<string, unknown>; ts: number }
  | { type: 'private'; id: string; from: string; to: string; message: string; ts: number }
  | { type: 'system'; event: 'join' | 'leave'; user: string; users: string[] };

/** Signaling frames (`/ws/signaling/:consultationId/:userType`). */
export type SignalFrame =
  | { type: 'offer' | 'answer' | 'ice-candidate'; from: 'doctor' | 'patient'; payload: Record<string, unknown> }
  | { type: 'peer-joined' | 'peer-left'; role: 'doctor' | 'patient' }
  | { type: 'publication'; channel: string; data: Record<string, unknown>; ts: number };

/** `{"type":"error"}` frames: the server refused one frame; the connection stays open. */
export interface ErrorFrame {
  type: 'error';
  /** `channel`: on `/ws`, the channel the refused frame was about. */
  payload: { code: string; message: string; channel?: string };
}

const CHAT_TYPES = new Set(['message', 'private', 'system']);
const SIGNAL_TYPES = new Set(['offer', 'answer', 'ice-candidate', 'peer-joined', 'peer-left']);
const ALERTS_PATH = '/api/alerts/subscribe';
const CHAT_PATH = /\/ws\/chat\/[^/]+$/;
const SIGNALING_PATH = /\/ws\/signaling\//;
/** The multiplexed endpoint: channels are subscribed with frames (client.subscribe()), not by the path. */
const MULTIPLEXED_PATH = /\/ws\/?$/;
/** The server comments on an idle event stream every 15 s: nothing for three times that long is a dead link. */
const STREAM_IDLE_MS = 45_000;

/** How a `/ws` client reaches the gateway: see ClientOptions.transport. */
export type TransportMode = 'auto' | 'websocket' | 'sse';

export interface ClientOptions {
  /** ws:// or wss:// URL of an endpoint, or a function returning one per attempt (several replicas, tests). */
  url: string | (() => string);
  /** Called before every connect, and again after a 4001 (token expired or revoked). */
  getToken: () => string | Promise<string>;
  /** Where the token goes: the `bearer, <jwt>` subprotocols (default; keeps it out of URLs) or `?token=`. */
  tokenIn?: 'subprotocol' | 'query';
  backoff?: BackoffOptions;
  /** Client-side dead-link detection: a text `ping` this often; no frame for twice as long closes the socket. */
  heartbeatMs?: number;
  /** Frames sent while disconnected wait here (oldest first); beyond it send() throws. Default 100. */
  maxQueued?: number;
  /** Defaults to globalThis.WebSocket (browsers, Node ≥ 22); pass `require('ws')` on Node 20. */
  WebSocket?: WebSocketConstructor;
  /**
   * `/ws` only. `auto` (default): WebSocket first; when an upgrade cannot complete (reset or blocked before
   * `open`, dropped `Upgrade`, a proxy's own error page, no `open` within `upgradeTimeoutMs`) while plain HTTP
   * still reaches the gateway, Server-Sent Events (`GET /sse` + `POST /sse/send`) with the same API; WebSocket
   * again at the first reconnect after `retryWebSocketAfterMs`. A refusal the gateway explains (401, 403, 429,
   * 503 with its JSON body) is never a reason to switch. `websocket`: never SSE. `sse`: SSE only.
   */
  transport?: TransportMode;
  /** `auto`: an upgrade not open after this long counts as blocked (default 5000 ms). */
  upgradeTimeoutMs?: number;
  /** `auto`: after falling back to SSE, the first reconnect after this long tries WebSocket again (default 300000 ms). */
  retryWebSocketAfterMs?: number;
  /** For SSE and for asking the server why an upgrade failed; defaults to globalThis.fetch (browsers, Node ≥ 18). */
  fetch?: FetchFunction;
  /**
   * Acknowledge every alert (alerts endpoint) or publication (`/ws`, either transport) that asks for it
   * (`"ack": true`) as soon as it arrives: proof of delivery to the device, not that a person read it (for that,
   * call ack() from your UI instead). Off by default. A replayed alert already acked is not acked again.
   */
  autoAck?: boolean;
}

/** Acks sent at most this many per second (after a burst of ACK_BURST): a resume replaying many alerts that ask for ack stays within the server's rate limit. */
const ACKS_PER_SEC = 10;
const ACK_BURST = 10;
/** Acks waiting for a connection, at most (the oldest are dropped beyond it: the server keeps them pending). */
const MAX_ACKS_WAITING = 1000;
/** Ids acked lately, not acked again when a resume replays them. */
const ACKED_REMEMBERED = 1000;

interface Events {
  open: void;
  frame: Record<string, unknown>;
  welcome: WelcomeFrame;
  alert: AlertFrame;
  resumed: { recovered: boolean };
  chat: ChatFrame;
  signal: SignalFrame;
  rejected: ErrorFrame;
  close: { code: number; reason: string; reconnectInMs: number | undefined };
  /** Closed with 4003 by an operator (server API disconnect); the client does not reconnect. */
  disconnected: { reason: string };
  /** The upgrade was refused with 403 `banned`; the client does not reconnect. Retry after `retryAfterMs` at the earliest. */
  banned: { retryAfterMs: number | undefined; message: string | undefined };
  error: GatewayError;
}

/**
 * A WebSocket client for realtime-gateway that reconnects the way the server expects: at once (with a little
 * jitter) after a drain (1012) or going-away (1001); after a new token on 4001; with exponential backoff and
 * full jitter after anything else; never after 1003, 1008, 1009, 4003 (an operator disconnected the user:
 * also a `disconnected` event) or an HTTP 400/401/403/404 (a 403 `banned` also emits `banned`), which surface as a
 * fatal `error` (a `token_expired` or `token_revoked` first gets one retry if getToken() returns another token). Browsers hide
 * the status of a refused upgrade: there, after a failed attempt, the client asks the server why with a plain
 * GET of the same URL (token in `Authorization`), which answers with the same refusal. On the alerts and chat endpoints it resumes with `?since=<last id>&epoch=<epoch>` (alerts
 * also `user_since` / `user_epoch` for personal alerts), so nothing is missed or repeated; `resumed` with
 * `recovered: false` means something was lost: refetch your state. Only messages with an id move the
 * position: a live-only message is never resumed from. On `/ws` (one connection, many channels) each channel is a
 * handle from subscribe(), with its own position, resumed on every reconnect.
 */
export class RealtimeClient extends Emitter<Events> {
  /** The current connection: a WebSocket, or an SSE stream that looks like one. */
  private ws: WebSocketLike | EventStream | undefined;
  /** The current (or last) attempt goes over SSE. */
  private overSse = false;
  /** `auto` after a fallback: attempts use SSE until this time, then WebSocket again. */
  private sseUntil: number | undefined;
  /** SSE: the id of the last event that had one (every channel's position), sent as `Last-Event-ID` on reconnect. */
  private cursor: string | undefined;
  private upgradeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Upgrades cut before open in a row while plain HTTP reached the gateway (`auto`: two mean WebSocket is blocked). */
  private resets = 0;
  private readonly queue: string[] = [];
  /** Frames an SSE stream took but could not deliver: first on the next connection. */
  private readonly resend: string[] = [];
  private attempt = 0;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private lastFrameAt = 0;
  private refused: Refusal | undefined;
  /** The token of the current attempt: sent when asking the server why, never logged or put in a message. */
  private token = '';
  private opened = false;
  private lastUrl: string | undefined;
  /** A refused `token_expired` or `token_revoked` gets one retry with a fresh token (reset once a connection opens). */
  private retriedExpired = false;
  private currentPath = '';
  /** The current connection is to `/ws`: frames are routed to the handles by their channel. */
  private multiplexed = false;
  /** `/ws`: one handle per channel, subscribed again on every open. */
  private readonly channels = new Map<string, ChannelSubscription>();
  /** Acks not sent yet (serialised), paced by `ackTokens`. */
  private readonly acks: string[] = [];
  private ackTokens = ACK_BURST;
  private ackRefilledAt = 0;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** `<channel>\0<id>` of what was acked lately. */
  private readonly acked = new Set<string>();
  private readonly link: ChannelLink = {
    ack: (channel, id, automatic, redelivered) => {
      if (automatic && !this.options.autoAck) return;
      this.queueAck(id, channel, redelivered);
    },
    sendNow: (frame) => {
      if (!this.connected || !this.multiplexed) return false;
      this.ws!.send(JSON.stringify(frame));
      return true;
    },
    send: (frame) => this.send(frame as unknown as Record<string, unknown>),
    forget: (subscription) => {
      if (this.channels.get(subscription.channel) === subscription) this.channels.delete(subscription.channel);
    },
    retryDelay: (attempt) => backoffDelay(attempt, this.options.backoff),
  };
  /** The endpoint's main channel (`alerts`, or the chat room): sent as `since` and `epoch` on reconnect. */
  position: Position | undefined;
  /** Alerts endpoint: the personal channel `user:<sub>`, sent as `user_since` and `user_epoch`. */
  userPosition: Position | undefined;

  /** Id of the last alert received with an id (the `alerts` channel). */
  get lastAlertId(): string | undefined {
    return this.position?.id;
  }

  constructor(private readonly options: ClientOptions) {
    super();
    this.overSse = options.transport === 'sse';
  }

  get connected(): boolean {
    return this.ws?.readyState === 1;
  }

  /** How the current connection (or the attempt under way) reaches the gateway. */
  get transport(): 'websocket' | 'sse' {
    return this.overSse ? 'sse' : 'websocket';
  }

  /** Opens the connection (and keeps it open until close()). */
  connect(): void {
    this.stopped = false;
    void this.open();
  }

  /** Sends a frame now, or queues it while reconnecting. Throws a `queue` GatewayError when the queue is full. */
  send(frame: string | Record<string, unknown>): void {
    const text = typeof frame === 'string' ? frame : JSON.stringify(frame);
    if (this.connected) return this.ws!.send(text);
    if (this.stopped) throw new GatewayError('queue', 0, undefined, 'the client is closed', true);
    if (this.queue.length >= (this.options.maxQueued ?? 100)) {
      throw new GatewayError('queue', 0, undefined, `not connected and ${this.queue.length} frames are already queued`, false);
    }
    this.queue.push(text);
  }

  /**
   * Acknowledges an alert received with `"ack": true` (docs/protocol.md "Acknowledgements"): its `id`, and its `channel` when the
   * frame named one (personal alerts; every `/ws` publication; `sub.ack(id)` on a channel handle does this).
   * Recorded once per user by the server; sent at once when connected, otherwise on the next connection (paced at
   * 10 per second, so that many acks never trip the rate limit). An id the server does not know as an alert
   * delivered to you comes back as a `rejected` error `unknown_alert` (on `/ws`, also on the channel's handle).
   */
  ack(id: string, channel?: string): void {
    if (typeof id !== 'string' || id === '') throw new TypeError('ack() takes the id of an alert frame received with "ack": true');
    this.queueAck(id, channel, true);
  }

  private queueAck(id: string, channel: string | undefined, again: boolean): void {
    const key = `${channel ?? ''}\0${id}`;
    if (!again && this.acked.has(key)) return;
    this.acked.add(key);
    if (this.acked.size > ACKED_REMEMBERED) this.acked.delete(this.acked.values().next().value!);
    this.acks.push(JSON.stringify(channel === undefined ? { type: 'ack', id } : { type: 'ack', id, channel }));
    if (this.acks.length > MAX_ACKS_WAITING) this.acks.shift();
    this.pumpAcks();
  }

  /** Sends waiting acks while connected and within the pace; the rest on a timer or the next open. */
  private pumpAcks(): void {
    const now = Date.now();
    this.ackTokens = Math.min(ACK_BURST, this.ackTokens + ((now - this.ackRefilledAt) * ACKS_PER_SEC) / 1000);
    this.ackRefilledAt = now;
    while (this.acks.length > 0 && this.connected && this.ackTokens >= 1) {
      this.ws!.send(this.acks.shift()!);
      this.ackTokens -= 1;
    }
    if (this.acks.length > 0 && this.connected && this.ackTimer === undefined && !this.stopped) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = undefined;
        this.pumpAcks();
      }, Math.ceil(1000 / ACKS_PER_SEC));
    }
  }

  /**
   * `/ws` only: the handle of one channel (the same handle when called again for a channel already held; its
   * options are then ignored). It subscribes now if connected, else when the connection opens, and again after
   * every reconnect, resuming from its own position. `since` / `epoch` resume from a position kept elsewhere
   * (a previous session).
   */
  subscribe(channel: string, options: SubscribeOptions = {}): ChannelSubscription {
    if (typeof channel !== 'string' || channel === '') throw new TypeError('subscribe() takes a channel name, e.g. "chat:lobby" or "alerts"');
    const base = typeof this.options.url === 'function' ? (this.lastUrl ?? this.options.url()) : this.options.url;
    if (!MULTIPLEXED_PATH.test(new URL(base).pathname)) {
      throw new Error(`subscribe() needs the /ws endpoint (this client's URL is ${new URL(base).pathname}): create the client with url "wss://<host>/ws"`);
    }
    let subscription = this.channels.get(channel);
    if (subscription) return subscription;
    subscription = new ChannelSubscription(channel, options, this.link);
    this.channels.set(channel, subscription);
    subscription._open();
    return subscription;
  }

  /** Closes for good (code 1000); no reconnect. Every channel handle ends (`unsubscribed`). */
  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    clearTimeout(this.upgradeTimer);
    this.stopHeartbeat();
    for (const subscription of [...this.channels.values()]) subscription._end();
    this.ws?.close(1000, 'client closed');
  }

  private async url(fresh?: string): Promise<{ url: string; protocols: string[] }> {
    const base = typeof this.options.url === 'function' ? this.options.url() : this.options.url;
    const token = fresh ?? (await this.options.getToken());
    this.token = token;
    const url = new URL(base);
    const resumable = url.pathname.endsWith(ALERTS_PATH) || CHAT_PATH.test(url.pathname);
    if (resumable && this.position) {
      url.searchParams.set('since', this.position.id);
      url.searchParams.set('epoch', this.position.epoch);
    }
    if (resumable && this.userPosition && url.pathname.endsWith(ALERTS_PATH)) {
      url.searchParams.set('user_since', this.userPosition.id);
      url.searchParams.set('user_epoch', this.userPosition.epoch);
    }
    if (this.options.tokenIn === 'query') {
      url.searchParams.set('token', token);
      return { url: url.toString(), protocols: [] };
    }
    return { url: url.toString(), protocols: ['bearer', token] };
  }

  private async open(fresh?: string): Promise<void> {
    if (this.stopped) return;
    const Impl = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Impl && this.options.transport !== 'sse') throw new Error('no WebSocket implementation: pass options.WebSocket (e.g. require("ws") on Node 20)');
    let target;
    try {
      target = await this.url(fresh);
    } catch (error) {
      this.emit('error', new GatewayError('http', 0, undefined, `getToken failed: ${(error as Error).message}`, false));
      return this.schedule(1006, 'no token');
    }
    this.refused = undefined;
    this.opened = false;
    this.lastUrl = target.url;
    this.currentPath = new URL(target.url).pathname;
    this.multiplexed = MULTIPLEXED_PATH.test(this.currentPath);
    if (!this.multiplexed && this.options.transport === 'sse') {
      // Asked for because WebSocket is blocked: a WebSocket attempt would fail behind the same proxy, silently.
      this.stopped = true;
      this.emit('error', new GatewayError('http', 0, undefined, `transport 'sse' needs the /ws endpoint (this client's URL is ${this.currentPath}): create the client with url "wss://<host>/ws" and subscribe to channels`, true));
      return;
    }
    this.overSse = this.multiplexed && this.wantsSse();
    if (this.overSse) return this.openStream(target.url);
    const ws = new Impl!(target.url, target.protocols);
    this.ws = ws;
    if (this.mayFallBack()) {
      // A middlebox that holds the upgrade without answering: as blocked as one that resets it.
      const ms = this.options.upgradeTimeoutMs ?? 5000;
      this.upgradeTimer = setTimeout(() => {
        if (this.ws !== ws || this.opened) return;
        try {
          ws.close();
        } catch {
          // closing a connecting socket fails it; some implementations throw instead
        }
        this.closed(1006, `no open within ${ms} ms`);
      }, ms);
    }
    ws.on?.('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (chunk) => (body += String(chunk)));
      res.on('end', () => {
        this.refused = refusal(res.statusCode ?? 0, body, res.headers['retry-after']);
        (req as { destroy?: () => void }).destroy?.(); // ws leaves a refused request to whoever listens
        this.closed(1006, describe(this.refused));
      });
    });
    ws.onopen = () => {
      // Over WebSocket: a later fallback starts afresh (a cursor from an earlier stream would replay old messages).
      this.sseUntil = undefined;
      this.cursor = undefined;
      this.startHeartbeat();
      this.opening();
    };
    ws.onmessage = (event) => this.received(String(event.data));
    ws.onerror = () => undefined; // the close that follows carries what is known
    ws.onclose = (event) => this.closed(event.code, event.reason);
  }

  /** `GET /sse` for every channel handle: fresh ones by name, the rest by the cursor or by a subscribe after the welcome. */
  private openStream(base: string): void {
    const fetchImpl = this.fetchFunction();
    if (!fetchImpl) throw new Error('no fetch implementation for SSE: pass options.fetch');
    const { stream, send } = streamUrls(base);
    // With a cursor, the server resumes the channels it names and ignores `?channel=`; every other channel is
    // subscribed once the welcome names the session (with `since` when it has a position), as on WebSocket.
    // Without one, fresh channels are asked for in the request and the rest subscribed after the welcome.
    const named = this.cursor !== undefined ? [] : [...this.channels.values()].filter((subscription) => subscription.state === 'pending' && subscription._from() === undefined);
    for (const subscription of named) stream.searchParams.append('channel', subscription.channel);
    const es = new EventStream({ url: stream.toString(), sendUrl: send.toString(), token: this.token, lastEventId: this.cursor, fetch: fetchImpl, idleMs: STREAM_IDLE_MS });
    this.ws = es;
    for (const subscription of named) subscription._attaching();
    es.onrefused = ({ status, body, retryAfter }) => (this.refused = refusal(status, body, retryAfter));
    es.onopen = (welcome) => this.opening(welcome);
    es.onmessage = ({ data, id }) => {
      if (id !== undefined) this.cursor = id || undefined; // an empty id clears it (EventSource sends none then)
      this.received(data);
    };
    es.onclose = ({ code, reason }) => {
      if (es.lastEventId !== undefined) this.cursor = es.lastEventId || undefined;
      this.closed(code, this.refused && !this.opened ? describe(this.refused) : reason);
    };
    es.onunsent = ({ texts }) => this.unsent(texts);
    es.onrejected = (frame, status, body) => this.rejectedSend(frame, status, body);
  }

  /** The connection is open (over SSE: with its welcome): subscribe, then send what waited. */
  private opening(welcome?: StreamWelcome): void {
    clearTimeout(this.upgradeTimer);
    this.resets = 0;
    this.opened = true;
    this.retriedExpired = false;
    this.attempt = 0;
    this.lastFrameAt = Date.now();
    this.emit('open', undefined);
    if (welcome) this.heldByStream(welcome);
    // Subscribes first: a publish queued while reconnecting needs its channel held by this connection.
    for (const subscription of [...this.channels.values()]) subscription._open();
    if (this.resend.length) this.queue.unshift(...this.resend.splice(0));
    while (this.queue.length && this.connected) this.ws!.send(this.queue.shift()!);
    this.pumpAcks();
  }

  /**
   * The channels a stream's welcome holds (named in its request, or resumed from the cursor) are subscribed, as
   * a `subscribed` frame would say; a channel the cursor resumed that no handle wants any more is let go.
   */
  private heldByStream(welcome: StreamWelcome): void {
    const held = welcome.channels !== null && typeof welcome.channels === 'object' ? welcome.channels : {};
    for (const [channel, position] of Object.entries(held)) {
      const subscription = this.channels.get(channel);
      if (subscription && subscription.state !== 'ended') {
        const frame: SubscribedFrame = { type: 'subscribed', channel };
        if (typeof position?.epoch === 'string' && typeof position.id === 'string') Object.assign(frame, { epoch: position.epoch, id: position.id });
        subscription._frame(frame);
      } else if (this.connected) {
        this.ws!.send(JSON.stringify({ type: 'unsubscribe', channel }));
      }
    }
  }

  /**
   * Frames an SSE stream did not deliver, in order: sent on the next connection before anything queued later
   * (subscribes are made anew there anyway, unsubscribes are moot on a new stream).
   */
  private unsent(texts: string[]): void {
    if (this.stopped) return;
    this.resend.push(...texts.filter((text) => !/^\{"type":"(?:un)?subscribe"/.test(text)));
  }

  /** A send refused (413 too_large, 400, 503 unavailable, …): reported as the error frame WebSocket would bring, not retried. */
  private rejectedSend(frame: Record<string, unknown>, status: number, body: string): void {
    const answer = refusal(status, body, undefined);
    const channel = typeof frame.channel === 'string' ? frame.channel : undefined;
    const code = answer.error ?? (status === 413 ? 'too_large' : status >= 500 ? 'unavailable' : 'bad_request');
    const error: ErrorFrame = {
      type: 'error',
      payload: { code, message: answer.message ?? `the send was refused with HTTP ${status}`, ...(channel ? { channel } : {}) },
    };
    if (channel) this.channels.get(channel)?._frame(error as ChannelFrame);
    this.emit('rejected', error);
  }

  private wantsSse(): boolean {
    const mode = this.options.transport ?? 'auto';
    if (mode !== 'auto') return mode === 'sse';
    if (this.sseUntil !== undefined && Date.now() >= this.sseUntil) this.sseUntil = undefined; // time to try WebSocket again
    return this.sseUntil !== undefined;
  }

  /** Only the `/ws` client in `auto` mode switches transports; path endpoints are WebSocket only. */
  private mayFallBack(): boolean {
    return this.multiplexed && (this.options.transport ?? 'auto') === 'auto';
  }

  private fetchFunction(): FetchFunction | undefined {
    const f = this.options.fetch ?? (globalThis as { fetch?: FetchFunction }).fetch;
    // Called as a plain function: a browser's fetch called as a method of another object throws "Illegal invocation".
    return f && ((url, init) => f(url, init));
  }

  /** The upgrade cannot complete but plain HTTP gets through: the next attempt, at once, is SSE. */
  private fallBack(why: string): void {
    this.resets = 0;
    this.sseUntil = Date.now() + (this.options.retryWebSocketAfterMs ?? 300_000);
    this.emit('close', { code: 1006, reason: `WebSocket unavailable (${why}): switching to SSE`, reconnectInMs: 0 });
    this.timer = setTimeout(() => void this.open(), 0);
  }

  private received(text: string): void {
    this.lastFrameAt = Date.now();
    if (text === 'pong') return;
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (this.multiplexed) {
      const channel = frame.type === 'error' ? (frame.payload as { channel?: unknown } | undefined)?.channel : frame.channel;
      if (typeof channel === 'string') this.channels.get(channel)?._frame(frame as unknown as ChannelFrame);
      if (frame.type === 'error') this.emit('rejected', frame as unknown as ErrorFrame);
    } else if (frame.type === 'alert') {
      const alert = frame as unknown as AlertFrame;
      // A redelivered alert keeps its first id: not a position to resume from.
      if (typeof alert.id === 'string' && alert.redelivered !== true) {
        if (alert.channel?.startsWith('user:')) this.advance('userPosition', alert.id);
        else this.advance('position', alert.id);
      }
      this.emit('alert', alert);
      if (this.options.autoAck && alert.ack === true && typeof alert.id === 'string') this.queueAck(alert.id, alert.channel, alert.redelivered === true);
    } else if (frame.type === 'welcome') {
      const welcome = frame as unknown as WelcomeFrame;
      this.position = adopt(this.position, welcome.epoch, welcome.id);
      this.userPosition = adopt(this.userPosition, welcome.user_epoch, welcome.user_id);
      this.emit('welcome', welcome);
    } else if (frame.type === 'resumed') {
      this.emit('resumed', { recovered: frame.recovered === true });
    } else if (frame.type === 'error') {
      this.emit('rejected', frame as unknown as ErrorFrame);
    } else if (frame.type === 'publication') {
      if (typeof frame.id === 'string') this.advance('position', frame.id);
      this.emit(SIGNALING_PATH.test(this.currentPath) ? 'signal' : 'chat', frame as unknown as ChatFrame & SignalFrame);
    } else if (CHAT_TYPES.has(frame.type as string)) {
      if (frame.type === 'message' && typeof frame.id === 'string') this.advance('position', frame.id);
      this.emit('chat', frame as unknown as ChatFrame);
    } else if (SIGNAL_TYPES.has(frame.type as string)) {
      this.emit('signal', frame as unknown as SignalFrame);
    }
    this.emit('frame', frame);
  }

  private advance(which: 'position' | 'userPosition', id: string): void {
    const current = this[which];
    if (current) this[which] = { id, epoch: current.epoch };
  }

  private closed(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = undefined;
    ws.onclose = ws.onmessage = ws.onopen = null;
    clearTimeout(this.upgradeTimer);
    this.stopHeartbeat();
    for (const subscription of this.channels.values()) subscription._closed();
    if (this.stopped) return this.emit('close', { code, reason, reconnectInMs: undefined });
    const upgrade = !this.overSse && !this.opened;
    const refused = this.refused;
    if (upgrade && refused && this.mayFallBack() && (refused.error === undefined || refused.status === 426)) {
      // Not the gateway's refusal: a proxy's own page, or 426 because something on the way dropped `Upgrade`.
      return this.fallBack(refused.error === undefined ? `HTTP ${refused.status} from something that is not the gateway` : 'the Upgrade header was dropped on the way');
    }
    if (upgrade && code === 1006 && !refused && (!('on' in ws && ws.on) || this.mayFallBack())) {
      // The upgrade failed without an HTTP answer (a browser hides it; or reset, or blocked). Ask the server (a
      // plain GET of the same URL answers with the refusal the upgrade got), then decide as the `ws` path does;
      // on `/ws`, an answer that explains nothing while plain HTTP gets through means WebSocket is what fails.
      void this.askWhy().then((answer) => {
        if (this.stopped || this.ws) return;
        if (answer === 'reachable' && this.mayFallBack()) {
          // A stalled upgrade says enough at once; a reset may be one replica dying mid-upgrade, so it takes two in a row.
          if (reason.startsWith('no open within')) return this.fallBack(`${reason}; plain HTTP gets through`);
          if (++this.resets >= 2) return this.fallBack('the upgrade was cut before open twice in a row; plain HTTP gets through');
        } else {
          this.resets = 0; // explained, or nothing answers: not in a row any more
        }
        if (typeof answer === 'object') this.refused = answer;
        this.decide(code, typeof answer === 'object' ? describe(answer) : reason);
      });
      return;
    }
    this.decide(code, reason);
  }

  private decide(code: number, reason: string): void {
    const refused = this.refused;
    if ((refused?.error === 'token_expired' || refused?.error === 'token_revoked') && !this.retriedExpired) {
      this.retriedExpired = true;
      void this.retryWithFreshToken(code, reason);
      return;
    }
    if (refused && FATAL_HTTP_STATUSES.has(refused.status)) {
      this.stopped = true;
      this.emit('close', { code, reason, reconnectInMs: undefined });
      if (refused.error === 'banned') this.emit('banned', { retryAfterMs: refused.retryAfterMs, message: refused.message });
      const detail = refused.message && this.token ? refused.message.split(this.token).join('<token>') : refused.message;
      this.emit('error', new GatewayError('http', refused.status, refused.error, `refused: ${refused.status} ${refused.error ?? ''}${detail ? ` — ${detail}` : ''}`.trim(), true));
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) {
      this.stopped = true;
      this.emit('close', { code, reason, reconnectInMs: undefined });
      if (code === DISCONNECTED_CLOSE_CODE) this.emit('disconnected', { reason });
      this.emit('error', new GatewayError('close', code, undefined, `closed ${code} ${reason}`.trim(), true));
      return;
    }
    this.schedule(code, reason, refused?.retryAfterMs);
  }

  /** `token_expired` or `token_revoked` before the handshake: one retry at once if getToken() now gives another token. */
  private async retryWithFreshToken(code: number, reason: string): Promise<void> {
    const refused = this.token;
    let fresh: string | undefined;
    try {
      fresh = await this.options.getToken();
    } catch {
      fresh = undefined;
    }
    if (this.stopped || this.ws) return;
    if (fresh === undefined || fresh === refused) return this.decide(code, reason); // nothing new: fatal
    this.emit('close', { code, reason, reconnectInMs: 0 });
    this.timer = setTimeout(() => void this.open(fresh), 0);
  }

  /**
   * The refusal the server gives a plain GET of this attempt's URL (ws→http, the token moved from the query to
   * `Authorization`); `reachable` when an HTTP answer explains nothing: 426 (the checks pass; the cause reserves
   * something or is the network) or no JSON refusal (a proxy's page); `unreachable` when nothing answers (or
   * CORS hides the answer).
   */
  private async askWhy(): Promise<Refusal | 'reachable' | 'unreachable'> {
    const fetchImpl = this.fetchFunction();
    if (!fetchImpl || !this.lastUrl) return 'unreachable';
    try {
      const url = new URL(this.lastUrl);
      url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
      url.searchParams.delete('token');
      const res = await fetchImpl(url.toString(), {
        headers: this.token ? { Authorization: `Bearer ${this.token}` } : {},
        cache: 'no-store',
        signal: typeof AbortSignal?.timeout === 'function' ? AbortSignal.timeout(5000) : undefined,
      });
      const answer = refusal(res.status, await res.text(), res.headers.get('retry-after') ?? undefined);
      return answer.error && res.status !== 426 ? answer : 'reachable';
    } catch {
      return 'unreachable';
    }
  }

  private schedule(code: number, reason: string, retryAfterMs?: number): void {
    let delay: number;
    // 4001 (token expired or revoked): getToken() runs before every connect, so the retry carries a fresh token.
    if (code === 1012 || code === 1001 || code === 4001) delay = Math.floor(Math.random() * RESTART_JITTER_MS);
    else if (retryAfterMs !== undefined) delay = retryAfterMs + Math.floor(Math.random() * RESTART_JITTER_MS);
    else delay = backoffDelay(this.attempt++, this.options.backoff);
    this.emit('close', { code, reason, reconnectInMs: delay });
    this.timer = setTimeout(() => void this.open(), delay);
  }

  /** WebSocket only: an event stream watches itself (the server's comments every 15 s). */
  private startHeartbeat(): void {
    const every = this.options.heartbeatMs;
    if (!every) return;
    this.heartbeat = setInterval(() => {
      if (!this.connected) return;
      if (Date.now() - this.lastFrameAt > 2 * every) {
        // Dead link: the server is unreachable but TCP has not noticed yet.
        const ws = this.ws!;
        ws.close(4000, 'no answer to pings');
        this.closed(1006, 'no answer to pings');
        return;
      }
      this.ws!.send('ping');
    }, every);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}

interface Refusal {
  status: number;
  error?: string;
  message?: string;
  retryAfterMs?: number;
}

/** The `/sse` and `/sse/send` URLs beside a `/ws` URL (same host and prefix; http for ws, https for wss). */
function streamUrls(wsUrl: string): { stream: URL; send: URL } {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.search = '';
  url.hash = '';
  const prefix = url.pathname.replace(/\/ws\/?$/, '');
  const stream = new URL(url.toString());
  stream.pathname = `${prefix}/sse`;
  const send = new URL(url.toString());
  send.pathname = `${prefix}/sse/send`;
  return { stream, send };
}

function describe({ status, error }: Refusal): string {
  return `HTTP ${status}${error ? ` ${error}` : ''}`;
}

/** A refusal from its status, its `{"error","message"}` body and its Retry-After (seconds). */
function refusal(status: number, body: string, retryAfter: unknown): Refusal {
  let parsed: { error?: unknown; message?: unknown } = {};
  try {
    parsed = JSON.parse(body) ?? {};
  } catch {
    // not the gateway's JSON (a proxy's page): the status alone
  }
  const seconds = retryAfter === undefined || retryAfter === null || retryAfter === '' ? NaN : Number(retryAfter);
  return {
    status,
    error: typeof parsed.error === 'string' ? parsed.error : undefined,
    message: typeof parsed.message === 'string' ? parsed.message : undefined,
    retryAfterMs: Number.isFinite(seconds) ? seconds * 1000 : undefined,
  };
}

/**
 * A welcome keeps the position of a resume in the same epoch (the replay continues it); a new epoch (or the
 * first welcome) starts from the id the server names, after which everything reaches this client.
 */
function adopt(current: Position | undefined, epoch: string | undefined, id: string | undefined): Position | undefined {
  if (epoch === undefined || id === undefined) return current;
  if (current && current.epoch === epoch) return current;
  return { id, epoch };
}
