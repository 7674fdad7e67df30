import { Catch, HttpException, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import type { Logger } from '../logging/logger';
import { ApiError } from './api-error';

const CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
  503: 'unavailable',
};

/** Every HTTP error leaves as `{"error", "message"}`; unexpected ones are logged and answered 500 without details. */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  constructor(private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return;
    if (exception instanceof ApiError) {
      for (const [name, value] of Object.entries(exception.headers)) res.setHeader(name, value);
      res.status(exception.getStatus()).json(exception.getResponse());
      return;
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Our handlers throw ApiError; a bare 400 is Nest wrapping a body-parser SyntaxError, whose text
      // would only echo parser internals.
      if (status === 400) {
        res.status(400).json({ error: 'bad_request', message: 'request body is not valid JSON' });
        return;
      }
      const body = exception.getResponse();
      const raw = typeof body === 'string' ? body : (body as { message?: unknown }).message;
      const message = Array.isArray(raw) ? raw.join('; ') : String(raw ?? exception.message);
      res.status(status).json({ error: CODES[status] ?? 'error', message });
      return;
    }
    // body-parser errors carry a status (invalid JSON 400, too large 413) and are not HttpExceptions.
    const status = (exception as { status?: number }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const message = status === 413 ? 'request body too large' : 'request body is not valid JSON';
      res.status(status).json({ error: CODES[status] ?? 'bad_request', message });
      return;
    }
    this.log.error({ err: exception }, 'unhandled error in HTTP handler');
    res.status(500).json({ error: 'internal_error', message: 'unexpected server error' });
  }
}
