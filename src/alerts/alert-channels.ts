import { publicationFrame, type ChannelPolicy } from '../channels/channel-hub';
import type { Publication } from '../channels/publication';
import type { Connection } from '../connection/connection';
import type { Receipts } from '../receipts/receipts';
import { encodeAlertFrame, frameIdAndTs, normaliseAlert, ownPublication, PersonalInputSchema, type AlertMarks, type StoredAlert } from './alert';

export const ALERTS_CHANNEL = 'alerts';

interface Targets {
  roles?: ReadonlySet<string>;
  users?: ReadonlySet<string>;
}

function targetsOf(alert: StoredAlert): Targets {
  return { roles: alert.roles && new Set(alert.roles), users: alert.users && new Set(alert.users) };
}
export const userChannel = (sub: string) => `user:${sub}`;

/** What the gateway's own fields ask of a publication: marks on its frames, and the alert whose deliveries to record. */
interface Tracking extends AlertMarks {
  /** Record deliveries under this alert id (receipts, or the push to users it did not reach). */
  alert?: string;
}

/** The marks and tracking of one alert publication; external publications (other services) get none. */
function trackingOf(publication: Publication, fields: { ack?: true; track?: true; redelivery?: string; alert?: string }, personal: boolean): Tracking {
  if (!ownPublication(publication)) return {};
  const marks: Tracking = { ack: fields.ack === true, redelivery: fields.redelivery };
  const { id } = frameIdAndTs(publication, marks);
  if (id && (fields.ack || fields.track)) marks.alert = personal ? fields.alert : id;
  return marks;
}

/** The `/ws` frame: the generic publication with the alert's marks, and a redelivery's first id and time. */
function channelFrame(publication: Publication, data: Record<string, unknown>, marks: AlertMarks): object {
  const { id, ts } = frameIdAndTs(publication, marks);
  const frame: Record<string, unknown> = { ...(publicationFrame(publication, { data }) as Record<string, unknown>), id, ts };
  if (marks.ack && id) frame.ack = true;
  if (marks.redelivery) frame.redelivered = true;
  return frame;
}

/**
 * `alerts`: every alerts connection, filtered by `roles` / `users`. Kept forever (its built-in namespace sets no TTL), and other
 * services XADD to its stream directly (the Redis contract of docs/cluster.md).
 */
export class AlertsChannelPolicy implements ChannelPolicy {
  readonly kind = 'alerts';
  readonly history = true;
  readonly externalAppends = true;
  /** Targeting of each publication, decoded once next to its frame. */
  private readonly targets = new WeakMap<Publication, Targets>();
  /** Marks of the alerts that carry any (ack, redelivery, tracking), decoded once. */
  private readonly marks = new WeakMap<Publication, Tracking>();

  constructor(private readonly receipts?: Receipts) {}

  private decode(publication: Publication): { alert: StoredAlert; marks: Tracking } | string {
    const alert = normaliseAlert(publication.data);
    if (typeof alert === 'string') return alert;
    const marks = alert.ack || alert.track || alert.redelivery ? trackingOf(publication, alert, false) : {};
    return { alert, marks };
  }

  encode(publication: Publication): Buffer | string {
    const decoded = this.decode(publication);
    if (typeof decoded === 'string') return decoded;
    const { alert, marks } = decoded;
    if (alert.roles || alert.users) this.targets.set(publication, targetsOf(alert));
    if (marks.ack || marks.redelivery || marks.alert) this.marks.set(publication, marks);
    return encodeAlertFrame(publication, alert.data, undefined, marks);
  }

  /** On `/ws`: a `publication` of channel `alerts`, with the same targeting (audience). */
  encodeForChannel(publication: Publication): object | string {
    const decoded = this.decode(publication);
    return typeof decoded === 'string' ? decoded : channelFrame(publication, decoded.alert.data, decoded.marks);
  }

  audience(publication: Publication): ((conn: Connection) => boolean) | undefined {
    const targets = this.targets.get(publication);
    if (!targets) return undefined;
    const { roles, users } = targets;
    return (conn) => (roles?.has(conn.user.role) ?? false) || (users?.has(conn.user.sub) ?? false);
  }

  receipt(publication: Publication): ((conn: Connection) => void) | undefined {
    const marks = this.marks.get(publication);
    return marks?.alert && this.receipts ? this.receipts.tracker(marks.alert, marks.ack === true) : undefined;
  }
}

/** `user:<sub>`: personal alerts, delivered on that user's alerts connections, with their own history. */
export class UserChannelPolicy implements ChannelPolicy {
  readonly kind = 'user';
  readonly history = true;
  private readonly marks = new WeakMap<Publication, Tracking>();

  constructor(private readonly receipts?: Receipts) {}

  private decode(publication: Publication): { data: Record<string, unknown>; marks: Tracking } | string {
    const parsed = PersonalInputSchema.safeParse(publication.data);
    if (!parsed.success) return parsed.error.issues[0].message;
    const personal = parsed.data;
    const marks = personal.ack || personal.track || personal.redelivery ? trackingOf(publication, personal, true) : {};
    return { data: personal.data, marks };
  }

  encode(publication: Publication): Buffer | string {
    const decoded = this.decode(publication);
    if (typeof decoded === 'string') return decoded;
    if (decoded.marks.ack || decoded.marks.redelivery || decoded.marks.alert) this.marks.set(publication, decoded.marks);
    return encodeAlertFrame(publication, decoded.data, publication.channel, decoded.marks);
  }

  encodeForChannel(publication: Publication): object | string {
    const decoded = this.decode(publication);
    return typeof decoded === 'string' ? decoded : channelFrame(publication, decoded.data, decoded.marks);
  }

  receipt(publication: Publication): ((conn: Connection) => void) | undefined {
    const marks = this.marks.get(publication);
    if (!marks?.alert || !this.receipts) return undefined;
    const { id } = frameIdAndTs(publication, marks);
    return this.receipts.tracker(marks.alert, marks.ack === true, { channel: publication.channel, id: id! });
  }
}
