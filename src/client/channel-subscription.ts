import { Emitter } from './emitter';
import { ChannelError, FATAL_CHANNEL_CODES, RETRIED_CHANNEL_CODES } from './errors';

/** Where a client is in a channel's history: what it sends as `since` and `epoch` when it resumes. */
export interface Position {
  id: string;
  epoch: string;
}

// Client → server frames of `/ws` (docs/protocol.md "One connection, many channels").
export interface SubscribeFrame {
  type: 'subscribe';
  channel: string;
  since?: string;
  epoch?: string;
}
export interface UnsubscribeFrame {
  type: 'unsubscribe';
  channel: string;
}
export interface PublishFrame {
  type: 'publish';
  channel: string;
  data: Record<string, unknown>;
}
/** The acknowledgement of an alert received with `"ack": true` (docs/protocol.md "Acknowledgements"). */
export interface AckFrame {
  type: 'ack';
  id: string;
  channel?: string;
}

// Server → client frames of `/ws`, each naming its channel.
/** The channel's position now; no `epoch` / `id` on a live-only namespace (signaling, `history: {size: 0}`). */
export interface SubscribedFrame {
  type: 'subscribed';
  channel: string;
  epoch?: string;
  id?: string;
}
export interface PublicationFrame {
  type: 'publication';
  channel: string;
  /** Absent on live-only messages: those are never resumed from. */
  id?: string;
  data: Record<string, unknown>;
  ts: number;
  /** The member who published it from a client (`publish: members` namespaces). */
  user?: string;
  /** An alert that asks for acknowledgement: `subscription.ack(frame.id)` (or the client's `autoAck`). */
  ack?: true;
  /** An escalation's copy of an alert not acknowledged in time: the same id and ts, not a new position. */
  redelivered?: true;
}
/** Members coming and going, where the namespace has `join_leave` (chat). */
export interface PresenceFrame {
  type: 'join' | 'leave';
  channel: string;
  user: string;
}
/** A chat private message to this user (never kept in history: no `id`). */
export interface PrivateFrame {
  type: 'private';
  channel: string;
  from: string;
  to: string;
  message: string;
  ts: number;
}
export interface ResumedFrame {
  type: 'resumed';
  channel: string;
  recovered: boolean;
}
export interface UnsubscribedFrame {
  type: 'unsubscribed';
  channel: string;
}
/** An error frame about one channel (`forbidden_channel`, `unknown_channel`, `unavailable`, ...). */
export interface ChannelErrorFrame {
  type: 'error';
  payload: { code: string; message: string; channel: string };
}
export type ChannelFrame = SubscribedFrame | PublicationFrame | PresenceFrame | PrivateFrame | ResumedFrame | UnsubscribedFrame | ChannelErrorFrame;

export interface SubscribeOptions {
  /** Resume after this id (one received earlier, e.g. kept from a previous session). */
  since?: string;
  /** The epoch that id belongs to (from `subscribed`); without it the server cannot notice a lost history. */
  epoch?: string;
}

export interface ChannelEvents {
  /** The server holds the channel (again, after every reconnect); `epoch` and `id` name its position now. */
  subscribed: SubscribedFrame;
  publication: PublicationFrame;
  join: PresenceFrame;
  leave: PresenceFrame;
  private: PrivateFrame;
  /** After the replay of a resume; `recovered: false`: something of this channel was lost, refetch its state. */
  resumed: { recovered: boolean };
  /** An error frame about this channel; `fatal` when it ended the handle. */
  error: ChannelError;
  /** The handle ended: unsubscribe(), a refusal retrying cannot fix (`error` names it), or client.close(). */
  unsubscribed: { error?: ChannelError };
}

/**
 * - `pending`: not held on the current connection: waiting for the connection to open, or for a retry
 * - `subscribing`: the subscribe is sent, its `subscribed` not yet received
 * - `subscribed`: held; deliveries arrive
 * - `ended`: unsubscribed or refused; publish() throws
 */
export type SubscriptionState = 'pending' | 'subscribing' | 'subscribed' | 'ended';

/** What a handle needs from its client (kept out of the public surface of either). */
export interface ChannelLink {
  /** An ack of this channel's frame `id`: `automatic` ones (a frame asking for it) only with the client's autoAck. */
  ack(channel: string, id: string, automatic: boolean, redelivered: boolean): void;
  /** Sends now when the connection is open; false otherwise (the next open subscribes again anyway). */
  sendNow(frame: SubscribeFrame | UnsubscribeFrame): boolean;
  /** Sends now, or queues until the next open (after that connection's subscribes). */
  send(frame: PublishFrame): void;
  forget(subscription: ChannelSubscription): void;
  /** The client's backoff (its `backoff` options) for this retry of a subscribe. */
  retryDelay(attempt: number): number;
}

/**
 * One channel of a `/ws` connection, from `client.subscribe(channel)`. It keeps the channel's own position
 * (the `epoch` of `subscribed`, the `id` of the last message that had one: a message without `id` never moves
 * it) and, after every reconnect, subscribes again with that position as `since` / `epoch`, so the channel
 * gets its replay and `resumed`: every message once and in order, or `recovered: false`.
 */
export class ChannelSubscription extends Emitter<ChannelEvents> {
  private current: SubscriptionState = 'pending';
  private resumeFrom: { id: string; epoch?: string } | undefined;
  private known: Position | undefined;
  private attempt = 0;
  private retry: ReturnType<typeof setTimeout> | undefined;

  /** @internal Made by RealtimeClient.subscribe(). */
  constructor(
    readonly channel: string,
    options: SubscribeOptions,
    private readonly link: ChannelLink,
  ) {
    super();
    if (options.since !== undefined) this.resumeFrom = { id: options.since, epoch: options.epoch };
  }

  get state(): SubscriptionState {
    return this.current;
  }

  /** What the next subscribe resumes from; undefined before the first `subscribed`, and always on live-only channels. */
  get position(): Position | undefined {
    return this.known;
  }

  /**
   * Publishes on the channel (namespaces with `publish: members`); every subscriber, this one included, gets it
   * with your `user`. Queued while reconnecting. A refusal (`forbidden_publish`, `message_too_long`,
   * `unavailable`) arrives as an `error` event and is not retried; the handle stays.
   */
  publish(data: Record<string, unknown>): void {
    if (this.current === 'ended') {
      throw new Error(`the subscription to ${this.channel} has ended (unsubscribed or refused): call client.subscribe(${JSON.stringify(this.channel)}) again`);
    }
    this.link.send({ type: 'publish', channel: this.channel, data });
  }

  /**
   * Acknowledges an alert of this channel received with `"ack": true` (`alerts`, `user:<sub>`): its `id`. Sent
   * at once or on the next connection; `unknown_alert` comes back as an `error` event (the handle stays).
   */
  ack(id: string): void {
    if (typeof id !== 'string' || id === '') throw new TypeError('ack() takes the id of a publication received with "ack": true');
    this.link.ack(this.channel, id, false, true);
  }

  /** Leaves the channel: nothing more is delivered to this handle, and the server stops sending it. */
  unsubscribe(): void {
    if (this.current === 'ended') return;
    // Only a connection that holds the channel (or is attaching it) has anything to stop; a later one never will.
    const held = this.current === 'subscribing' || this.current === 'subscribed';
    this._end();
    if (held) this.link.sendNow({ type: 'unsubscribe', channel: this.channel });
  }

  /** @internal The connection opened (or was open when the handle was made): subscribe, resuming if we can. */
  _open(): void {
    if (this.current !== 'pending') return;
    clearTimeout(this.retry);
    const from = this.known ?? this.resumeFrom;
    const frame: SubscribeFrame = { type: 'subscribe', channel: this.channel };
    if (from) {
      frame.since = from.id;
      if (from.epoch !== undefined) frame.epoch = from.epoch;
    }
    if (this.link.sendNow(frame)) this.current = 'subscribing';
  }

  /** @internal Where the next subscribe resumes from: the known position, or the `since` given; undefined for a fresh channel. */
  _from(): { id: string; epoch?: string } | undefined {
    return this.known ?? this.resumeFrom;
  }

  /**
   * @internal An SSE stream names this channel in its request (`?channel=`): the stream's welcome will hold it,
   * or an error event refuse it, as the answer to a subscribe would.
   */
  _attaching(): void {
    if (this.current === 'pending') this.current = 'subscribing';
  }

  /** @internal The connection closed: the next one subscribes again. */
  _closed(): void {
    clearTimeout(this.retry);
    if (this.current !== 'ended') this.current = 'pending';
  }

  /** @internal Ends the handle for good. */
  _end(error?: ChannelError): void {
    if (this.current === 'ended') return;
    clearTimeout(this.retry);
    this.current = 'ended';
    this.link.forget(this);
    this.emit('unsubscribed', error ? { error } : {});
  }

  /** @internal A frame naming this channel. */
  _frame(frame: ChannelFrame): void {
    if (this.current === 'ended') return;
    if (frame.type === 'error') return this.refused(frame.payload);
    if (frame.type === 'subscribed') return this.subscribed(frame);
    // Before this connection's `subscribed`, a frame of this channel belongs to an earlier subscription that
    // an unsubscribe is ending (the server always answers a subscribe with `subscribed` first).
    if (this.current !== 'subscribed') return;
    switch (frame.type) {
      case 'publication':
        // Only a message with an id is a position; a live-only one is never resumed from, nor is an escalation's
        // copy of an alert (it keeps the id it was first delivered with).
        if (typeof frame.id === 'string' && this.known && frame.redelivered !== true) this.known = { id: frame.id, epoch: this.known.epoch };
        this.emit('publication', frame);
        if (frame.ack === true && typeof frame.id === 'string') this.link.ack(this.channel, frame.id, true, frame.redelivered === true);
        return;
      case 'join':
      case 'leave':
        return this.emit(frame.type, frame);
      case 'private':
        return this.emit('private', frame);
      case 'resumed':
        return this.emit('resumed', { recovered: frame.recovered === true });
    }
  }

  private subscribed(frame: SubscribedFrame): void {
    const first = this.current !== 'subscribed';
    this.current = 'subscribed';
    this.attempt = 0;
    this.resumeFrom = undefined;
    if (typeof frame.epoch === 'string' && typeof frame.id === 'string') {
      // The answer to our subscribe is the server's word on where we are: our own `since` when it proved valid,
      // else the channel's top. A later one on the same connection (the history was lost meanwhile) only
      // matters with a new epoch; in the same epoch our own last id is at least as good.
      if (first || this.known?.epoch !== frame.epoch) this.known = { id: frame.id, epoch: frame.epoch };
    }
    this.emit('subscribed', frame);
  }

  private refused({ code, message }: { code: string; message: string }): void {
    const subscribing = this.current === 'subscribing';
    if (subscribing && RETRIED_CHANNEL_CODES.has(code)) {
      // A refusal of a moment (Redis or the proxy unreachable): subscribe again after the SDK's backoff.
      this.current = 'pending';
      const delay = this.link.retryDelay(this.attempt++);
      this.emit('error', new ChannelError(this.channel, code, `${code} on ${this.channel} — ${message} (retrying in ${delay} ms)`, false));
      this.retry = setTimeout(() => this._open(), delay);
      return;
    }
    if (subscribing && FATAL_CHANNEL_CODES.has(code)) {
      const error = new ChannelError(this.channel, code, `${code} on ${this.channel} — ${message}`, true);
      this.emit('error', error);
      this._end(error);
      return;
    }
    // A refused publish (forbidden_publish, message_too_long, unavailable, not_subscribed): that frame is lost,
    // the subscription stays.
    this.emit('error', new ChannelError(this.channel, code, `${code} on ${this.channel} — ${message}`, false));
  }
}
