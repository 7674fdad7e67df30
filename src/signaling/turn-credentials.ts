import { createHmac } from 'node:crypto';
import type { Principal } from '../auth/principal';
import type { TurnConfig } from '../config/config';

/** One entry of RTCConfiguration.iceServers, as a client passes it to `new RTCPeerConnection`. */
export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}

/** `{"type":"ice-servers",...}`: the first frame of a signaling connection when TURN is configured. */
export interface IceServersFrame {
  type: 'ice-servers';
  iceServers: IceServer[];
  /** How long the credential stays valid, from when the frame was built. */
  ttl_s: number;
}

/**
 * A TURN REST API credential, the scheme coturn's `use-auth-secret` checks: username `<expiry unix s>:<sub>`,
 * credential base64(HMAC-SHA1(secret, username)). coturn recomputes the HMAC from the username it receives,
 * so the gateway and coturn share only the secret, the client never holds a long-lived password, and coturn
 * refuses the username once its expiry is past. The `sub` in it lets coturn's per-user quota and logs name
 * the user.
 */
export function turnCredential(secret: string, sub: string, ttlSeconds: number, nowMs = Date.now()): { username: string; credential: string } {
  const username = `${Math.floor(nowMs / 1000) + ttlSeconds}:${sub}`;
  return { username, credential: createHmac('sha1', secret).update(username, 'utf8').digest('base64') };
}

/**
 * The `ice-servers` frame for `principal`: a fresh credential each call (a few microseconds of HMAC), so every
 * connection gets its own full TTL. Any endpoint that admits a signaling channel sends it first.
 */
export function iceServersFrame(turn: TurnConfig, principal: Pick<Principal, 'sub'>, nowMs = Date.now()): IceServersFrame {
  return {
    type: 'ice-servers',
    iceServers: [{ urls: [...turn.urls], ...turnCredential(turn.secret, principal.sub, turn.ttlSeconds, nowMs) }],
    ttl_s: turn.ttlSeconds,
  };
}
