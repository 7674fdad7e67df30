import type { LoggerService } from '@nestjs/common';
import { writeSync } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

let stampedAt = 0;
let stamp = '';

/** pino's isoTime, formatted once per millisecond: a node under load logs many lines per millisecond. */
function isoTime(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/**
 * JSON lines on stdout. Anything that could hold a credential is redacted as a second line of defence: the
 * code never passes tokens, headers or raw URLs to the logger in the first place.
 */
export function createLogger(level: string, nodeId: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { node: nodeId },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Top-level keys only: wildcard paths cost ~15 µs per line, on every connect and close.
      redact: { paths: ['token', 'authorization', 'headers', 'url', 'req'], censor: '[redacted]' },
    },
    destination ?? batchedDestination(),
  );
}

/**
 * The destination for this process's stdout: JSON lines (batched) for machines, and readable colored lines
 * (pino-pretty, synchronous) when a person watches a terminal outside production.
 */
export function stdoutDestination(nodeEnv: string, isTty = process.stdout.isTTY === true, terminal?: NodeJS.WritableStream): DestinationStream {
  if (!isTty || nodeEnv === 'production') return batchedDestination();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pretty = require('pino-pretty') as (options: Record<string, unknown>) => DestinationStream;
  return pretty({ colorize: terminal === undefined, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', ...(terminal ? { destination: terminal } : {}) });
}

/**
 * Collects whole lines and hands them to sonic-boom about 16 KB at a time. A busy node logs a line per connect
 * and per close; sonic-boom alone re-measures its pending buffer on every write (`Buffer.byteLength` of up to
 * 16 KB), which cost more than building the line. Flushed at least every second, so a quiet node's logs are
 * never held back, and synchronously on exit.
 */
export class LineBatcher implements DestinationStream {
  private lines: string[] = [];
  private chars = 0;

  constructor(
    private readonly out: ReturnType<typeof pino.destination>,
    private readonly batchChars = 16_384,
  ) {}

  write(line: string): void {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= this.batchChars) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    const batch = this.lines.join('');
    this.lines = [];
    this.chars = 0;
    this.out.write(batch);
  }

  /**
   * Writes what is held, synchronously (on exit, and in tests). Handing it to sonic-boom would not do: when
   * sonic-boom is idle, a write starts an asynchronous fs.write that its own flushSync then skips as in flight,
   * and the process may exit before it lands.
   */
  flushSync(): void {
    this.out.flushSync(); // what sonic-boom already queued (a write already in flight is beyond reach)
    if (this.lines.length === 0) return;
    const batch = Buffer.from(this.lines.join(''));
    this.lines = [];
    this.chars = 0;
    const fd = (this.out as unknown as { fd: number }).fd;
    for (let offset = 0, stalls = 0; offset < batch.length; ) {
      try {
        offset += writeSync(fd, batch, offset);
      } catch (error) {
        // A non-blocking stdout whose reader is slow: wait a little, but never hang an exiting process.
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || ++stalls > 100) return;
        Atomics.wait(SLEEPER, 0, 0, 10);
      }
    }
  }
}

/** Batched JSON lines to a file descriptor (stdout by default); the bench points it at /dev/null. */
export function batchedDestination(fd = 1): LineBatcher {
  // Bounded: if the reader of stdout stalls, lines beyond 16 MB are dropped instead of filling the heap.
  const batcher = new LineBatcher(pino.destination({ fd, sync: false, maxLength: 16 * 1024 * 1024 }));
  setInterval(() => batcher.flush(), 1000).unref();
  process.once('exit', () => batcher.flushSync());
  return batcher;
}

/**
 * A string as pino 10 writes it in a line (its `asString`): JSON, except that a short string without control
 * characters is only quoted and has `"` and `\\` escaped. test/unit/logger.spec.ts compares hot lines with pino's.
 */
export function jsonString(str: string): string {
  const l = str.length;
  if (l > 100) return JSON.stringify(str);
  let result = '';
  let last = 0;
  let found = false;
  let point = 255;
  for (let i = 0; i < l && point >= 32; i++) {
    point = str.charCodeAt(i);
    if (point === 34 || point === 92) {
      result += str.slice(last, i) + '\\';
      last = i;
      found = true;
    }
  }
  if (!found) result = str;
  else result += str.slice(last);
  return point < 32 ? JSON.stringify(str) : '"' + result + '"';
}

/** A log line of a fixed shape on a hot path; see hotLine. */
export interface HotLine {
  readonly enabled: boolean;
  /** `fields`: the line's own fields, serialised, each as `,"key":value` (strings through jsonString). */
  write(fields: string): void;
}

/**
 * `log[level](fields, msg)` for the lines every connection writes (connect, close), built as pino builds them
 * (level, time, bindings, fields, msg, in that order) without pino's generic path: that path (copying the
 * object, a serialiser and stringifier lookup per key, the redaction wrapper) was 4.4% of the gateway's CPU
 * under an upgrade storm, more than the line's own bytes. Undefined when the logger uses a pino feature the
 * shortcut does not reproduce (mixin, hooks, message prefix, nested key, a log formatter, a multistream): the
 * caller then logs through pino.
 */
export function hotLine(log: Logger, level: 'info' | 'debug', msg: string): HotLine | undefined {
  const s = pino.symbols as unknown as Record<string, symbol>;
  const any = log as unknown as Record<symbol, unknown>;
  const hooks = any[s.hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
  const formatters = any[s.formattersSym] as { log?: unknown } | undefined;
  const stream = any[s.streamSym] as DestinationStream & Record<symbol, unknown>;
  if (
    any[s.mixinSym] ||
    hooks?.logMethod ||
    hooks?.streamWrite ||
    typeof any[s.msgPrefixSym] === 'string' ||
    any[s.nestedKeySym] ||
    formatters?.log ||
    any[s.messageKeySym] !== 'msg' ||
    stream[s.needsMetadataGsym] === true ||
    (any[s.serializersSym] as Record<string, unknown>).msg
  ) {
    return undefined;
  }
  const num = log.levels.values[level];
  const msgStr = `,"msg":${jsonString(msg)}`;
  return {
    get enabled() {
      return log.levelVal <= num;
    },
    write(fields: string) {
      const time = (any[s.timeSym] as () => string)();
      const head = (any[s.lsCacheSym] as Record<number, string>)[num];
      stream.write(head + time + (any[s.chindingsSym] as string) + fields + msgStr + (any[s.endSym] as string));
    },
  };
}

/** Routes Nest's own log lines (bootstrap, route mapping, exceptions) into the same JSON stream. */
const BOOT_CONTEXTS = new Set(['NestFactory', 'InstanceLoader', 'RoutesResolver', 'RouterExplorer', 'NestApplication', 'WebSocketsController']);

export class NestPinoLogger implements LoggerService {
  constructor(private readonly pino: Logger) {}
  private write(level: 'info' | 'warn' | 'error' | 'debug' | 'trace', message: unknown, params: unknown[]) {
    const context = typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    if (message instanceof Error) this.pino[level]({ context, err: message }, message.message);
    else this.pino[level]({ context }, String(message));
  }
  log(message: unknown, ...params: unknown[]) {
    // Nest's boot chatter (a line per module and per route, about 120 lines) at debug: at info it buried the
    // lines an operator needs (config warnings, "listening") on a terminal.
    const context = params[params.length - 1];
    this.write(typeof context === 'string' && BOOT_CONTEXTS.has(context) ? 'debug' : 'info', message, params);
  }
  error(message: unknown, ...params: unknown[]) {
    // Nest passes (message, stack, context); keep the stack out of the message line.
    const context = typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    const stack = typeof params[0] === 'string' ? params[0] : undefined;
    if (message instanceof Error) this.pino.error({ context, err: message }, message.message);
    else this.pino.error({ context, stack }, String(message));
  }
  warn(message: unknown, ...params: unknown[]) {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]) {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]) {
    this.write('trace', message, params);
  }
}

export const LOGGER = Symbol('LOGGER');
export type { Logger };
