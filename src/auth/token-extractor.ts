import type { IncomingHttpHeaders } from 'node:http';

export type TokenSource = 'header' | 'subprotocol' | 'query';

/** The subprotocol a browser offers first (`new WebSocket(url, ['bearer', jwt])`); the server selects it. */
export const BEARER_PROTOCOL = 'bearer';

export function parseProtocols(header: string | string[] | undefined): string[] {
  if (!header) return [];
  const raw = Array.isArray(header) ? header.join(',') : header;
  return raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

export type ExtractedToken =
  | { token: string; source: TokenSource }
  | { token: undefined; hint: string };

/**
 * Finds the token in `Authorization: Bearer`, in the subprotocols `bearer, <jwt>`, or in `?token=`, in that
 * order. A place that is present but empty is reported, since it is usually a client bug.
 */
export function extractToken(
  headers: IncomingHttpHeaders,
  query: URLSearchParams | undefined,
  protocols: readonly string[] = [],
): ExtractedToken {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match) return { token: match[1], source: 'header' };
    return { token: undefined, hint: 'the Authorization header must be "Bearer <jwt>"' };
  }
  const bearerAt = protocols.findIndex((p) => p.toLowerCase() === BEARER_PROTOCOL);
  if (bearerAt !== -1) {
    const token = protocols[bearerAt + 1];
    if (token) return { token, source: 'subprotocol' };
    return { token: undefined, hint: 'the subprotocol "bearer" must be followed by the token: ["bearer", "<jwt>"]' };
  }
  const fromQuery = query?.get('token');
  if (fromQuery) return { token: fromQuery, source: 'query' };
  if (fromQuery === '') return { token: undefined, hint: 'the token query parameter is empty' };
  return {
    token: undefined,
    hint: 'pass it as ?token=<jwt>, as "Authorization: Bearer <jwt>", or as the subprotocols ["bearer", "<jwt>"]',
  };
}
