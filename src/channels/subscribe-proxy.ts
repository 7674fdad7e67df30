import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import { APP_CONFIG, type AppConfig, type SubscribeProxyConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';

/** The values of `ws_proxy_requests_total{result}`: a bounded set. */
export const PROXY_RESULTS = ['allowed', 'denied', 'error', 'timeout'] as const;
export type ProxyResult = (typeof PROXY_RESULTS)[number];

/** What the backend said, or why it could not say. */
export type ProxyVerdict = { result: 'allowed' } | { result: 'denied'; reason?: string } | { result: 'error' | 'timeout'; problem: string };

/**
 * An answer is `{"allow":false,"reason":".."}`, well under 1 KB: 64 KiB leaves room for any sensible reason, and a
 * larger answer (a wrong endpoint serving a page, a 10 MB body) is refused after reading at most this much.
 */
export const MAX_ANSWER_BYTES = 65_536;
/** A reason reaches the client in an error message or an HTTP refusal: 200 characters is a sentence or two. */
export const MAX_REASON_CHARS = 200;
/** Failure lines: the first at once, then at most one per this long carrying how many were not logged. */
const WARN_EVERY_MS = 10_000;

class ProxyFailure extends Error {}

/**
 * A reason as a client may be shown it: control and invisible format characters (bidi overrides, zero-width
 * spaces, line breaks) become spaces so it cannot forge lines or reorder text, and it is cut to 200 characters.
 */
export function cleanReason(reason: unknown): string | undefined {
  if (typeof reason !== 'string') return undefined;
  const clean = reason
    .replace(/[\p{Cc}\p{Cf}\u2028\u2029]+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (!clean) return undefined;
  const chars = Array.from(clean); // by code point: a cut never splits a surrogate pair
  return chars.length > MAX_REASON_CHARS ? `${chars.slice(0, MAX_REASON_CHARS - 1).join('')}…` : clean;
}

/** A network failure as a log may say it: the error code only (the message names the host and port). */
function networkProblem(error: unknown): string {
  const code = (error as { cause?: { code?: unknown } }).cause?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code) ? `no answer (${code})` : 'the request failed';
}

/**
 * The answer's body, refused as soon as it passes MAX_ANSWER_BYTES: a backend streaming a large body without a
 * Content-Length must not make the gateway buffer it (the read is cancelled, which closes the connection).
 */
async function readCapped(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      void reader.cancel().catch(() => undefined);
      throw new ProxyFailure(`answer larger than ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function discard(response: Response): void {
  // Not awaited: cancelling ends the request (and its connection) whatever the backend keeps sending.
  void response.body?.cancel().catch(() => undefined);
}

/**
 * The backend that admits subscriptions to `proxy` namespaces (docs/namespaces.md, proxy):
 * `POST SUBSCRIBE_PROXY_URL` with `Authorization: Bearer <PROXY_SECRET>` and `{"user","role","channel","claims"}`.
 * `200 {"allow":true}` admits; `200 {"allow":false,"reason"}` refuses; anything else, or no whole answer within
 * PROXY_TIMEOUT_MS, is a failure, and a failure never admits. Each question is counted in
 * `ws_proxy_requests_total{result}`; failures are logged at warn (rate-limited) with a short reason only: never
 * the URL, the secret, the token or the claims.
 */
@Injectable()
export class SubscribeProxy {
  private readonly config: SubscribeProxyConfig | undefined;
  private readonly counters = new Map<ProxyResult, { inc(): void }>();
  private lastWarnAt = -Infinity;
  private unlogged = 0;

  constructor(
    @Inject(APP_CONFIG) config: Pick<AppConfig, 'subscribeProxy'>,
    @Inject(LOGGER) private readonly log: Logger,
    metrics: Metrics,
  ) {
    this.config = config.subscribeProxy;
    for (const result of PROXY_RESULTS) {
      const counter = metrics.proxyRequests.labels(result);
      // Visible at zero when a proxy is configured, so an alert on the error rate has a baseline.
      if (this.config) counter.inc(0);
      this.counters.set(result, counter);
    }
  }

  get configured(): boolean {
    return this.config !== undefined;
  }

  /** One question, one request. `namespace` is for the log line (a bounded name, never the channel). */
  async ask(user: Principal, channel: string, namespace: string): Promise<ProxyVerdict> {
    const config = this.config;
    if (!config) return { result: 'error', problem: 'SUBSCRIBE_PROXY_URL is not set' };
    // The claims as the gateway verified them; never the raw token (the backend needs no credential of the user's).
    const claims: Record<string, unknown> = { sub: user.sub, role: user.role };
    if (user.email !== undefined) claims.email = user.email;
    if (user.channels !== undefined) claims.channels = user.channels;
    const body = JSON.stringify({ user: user.sub, role: user.role, channel, claims });
    const controller = new AbortController();
    // Covers the whole exchange (connecting, headers, body): one deadline, after which nothing admits.
    const timer = setTimeout(() => controller.abort(), config.timeoutMs);
    let verdict: ProxyVerdict;
    try {
      verdict = await this.request(config, body, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) verdict = { result: 'timeout', problem: `no answer within ${config.timeoutMs} ms` };
      else verdict = { result: 'error', problem: error instanceof ProxyFailure ? error.message : networkProblem(error) };
    } finally {
      clearTimeout(timer);
    }
    // An answer completed as the deadline passed is late all the same: it admits nobody.
    if (controller.signal.aborted && verdict.result !== 'timeout') verdict = { result: 'timeout', problem: `no answer within ${config.timeoutMs} ms` };
    this.counters.get(verdict.result)!.inc();
    if (verdict.result === 'error' || verdict.result === 'timeout') this.warn(verdict.result, verdict.problem, namespace);
    return verdict;
  }

  private async request(config: SubscribeProxyConfig, body: string, signal: AbortSignal): Promise<ProxyVerdict> {
    const response = await fetch(config.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.secret}`, 'content-type': 'application/json', accept: 'application/json' },
      body,
      signal,
      // A redirect would carry the secret to wherever it points: configure the final URL instead.
      redirect: 'manual',
    });
    if (response.status !== 200) {
      discard(response);
      throw new ProxyFailure(`status ${response.status}${response.status >= 300 && response.status < 400 ? ' (redirects are not followed)' : ''}`);
    }
    if (Number(response.headers.get('content-length')) > MAX_ANSWER_BYTES) {
      discard(response);
      throw new ProxyFailure(`answer larger than ${MAX_ANSWER_BYTES} bytes`);
    }
    const text = await readCapped(response);
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new ProxyFailure('the answer is not valid JSON');
    }
    const allow = (answer as { allow?: unknown } | null)?.allow;
    if (typeof answer !== 'object' || Array.isArray(answer) || typeof allow !== 'boolean') {
      throw new ProxyFailure('the answer has no boolean "allow" (expected {"allow":true} or {"allow":false,"reason":".."})');
    }
    return allow ? { result: 'allowed' } : { result: 'denied', reason: cleanReason((answer as { reason?: unknown }).reason) };
  }

  /**
   * A backend that is down fails every subscribe to its namespaces: the first failure is logged at once, then at
   * most one line per 10 s, with the number not logged in between (the counter has every one).
   */
  private warn(result: 'error' | 'timeout', problem: string, namespace: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < WARN_EVERY_MS) {
      this.unlogged++;
      return;
    }
    this.lastWarnAt = now;
    const notLogged = this.unlogged;
    this.unlogged = 0;
    this.log.warn(
      { event: 'subscribe_proxy_failed', result, problem, namespace, not_logged: notLogged },
      `the subscribe proxy (SUBSCRIBE_PROXY_URL) failed: ${problem}; subscribes to proxy namespaces are refused with 503 proxy_unavailable until it answers${notLogged ? ` (${notLogged} more failures since the last line)` : ''}`,
    );
  }
}
