import { publicationFrame, type ChannelPolicy } from '../channels/channel-hub';
import type { Publication } from '../channels/publication';
import type { Connection } from '../connection/connection';
import { encodeAlertFrame, normaliseAlert, PersonalInputSchema, type AlertInput } from './alert';

export const ALERTS_CHANNEL = 'alerts';

interface Targets {
  roles?: ReadonlySet<string>;
  users?: ReadonlySet<string>;
}

function targetsOf(alert: AlertInput): Targets {
  return { roles: alert.roles && new Set(alert.roles), users: alert.users && new Set(alert.users) };
}
export const userChannel = (sub: string) => `user:${sub}`;

/**
 * `alerts`: every alerts connection, filtered by `roles` / `users`. Kept forever (its built-in namespace sets no TTL), and other
 * services XADD to its stream directly (the SPEC's Redis contract).
 */
export class AlertsChannelPolicy implements ChannelPolicy {
  readonly kind = 'alerts';
  readonly history = true;
  readonly externalAppends = true;
  /** Targeting of each publication, decoded once next to its frame. */
  private readonly targets = new WeakMap<Publication, Targets>();

  encode(publication: Publication): Buffer | string {
    const alert = normaliseAlert(publication.data);
    if (typeof alert === 'string') return alert;
    if (alert.roles || alert.users) this.targets.set(publication, targetsOf(alert));
    return encodeAlertFrame(publication, alert.data);
  }

  /** On `/ws`: a `publication` of channel `alerts`, with the same targeting (audience). */
  encodeForChannel(publication: Publication): object | string {
    const alert = normaliseAlert(publication.data);
    return typeof alert === 'string' ? alert : publicationFrame(publication, { data: alert.data });
  }

  audience(publication: Publication): ((conn: Connection) => boolean) | undefined {
    const targets = this.targets.get(publication);
    if (!targets) return undefined;
    const { roles, users } = targets;
    return (conn) => (roles?.has(conn.user.role) ?? false) || (users?.has(conn.user.sub) ?? false);
  }
}

/** `user:<sub>`: personal alerts, delivered on that user's alerts connections, with their own history. */
export class UserChannelPolicy implements ChannelPolicy {
  readonly kind = 'user';
  readonly history = true;

  encode(publication: Publication): Buffer | string {
    const parsed = PersonalInputSchema.safeParse(publication.data);
    if (!parsed.success) return parsed.error.issues[0].message;
    return encodeAlertFrame(publication, parsed.data.data, publication.channel);
  }

  encodeForChannel(publication: Publication): object | string {
    return publicationFrame(publication);
  }
}
