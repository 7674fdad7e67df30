import type { LoggerService } from '@nestjs/common';
import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * JSON lines on stdout. Anything that could hold a credential is redacted as a second line of defence: the
 * code never passes tokens, headers or raw URLs to the logger in the first place.
 */
export function createLogger(level: string, nodeId: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { node: nodeId },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Top-level keys only: wildcard paths cost ~15 µs per line, on every connect and close.
      redact: { paths: ['token', 'authorization', 'headers', 'url', 'req'], censor: '[redacted]' },
    },
    destination ?? bufferedStdout(),
  );
}

/**
 * stdout in 4 KB batches instead of one write syscall per line (a busy node logs a line per connect and per
 * close), flushed at least every second so a quiet node's logs are never held back, and on exit.
 */
function bufferedStdout(): DestinationStream {
  const stream = pino.destination({ fd: 1, sync: false, minLength: 4096 });
  setInterval(() => stream.flush(), 1000).unref();
  process.once('exit', () => stream.flushSync());
  return stream;
}

/** Routes Nest's own log lines (bootstrap, route mapping, exceptions) into the same JSON stream. */
export class NestPinoLogger implements LoggerService {
  constructor(private readonly pino: Logger) {}
  private write(level: 'info' | 'warn' | 'error' | 'debug' | 'trace', message: unknown, params: unknown[]) {
    const context = typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    if (message instanceof Error) this.pino[level]({ context, err: message }, message.message);
    else this.pino[level]({ context }, String(message));
  }
  log(message: unknown, ...params: unknown[]) {
    this.write('info', message, params);
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
