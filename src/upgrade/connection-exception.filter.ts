import { Catch, type ArgumentsHost, type WsExceptionFilter } from '@nestjs/common';
import { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';

/**
 * For @SubscribeMessage handlers: a FrameError answers the sender with an error frame; anything else is a
 * server bug in that connection and closes it with 1011. Nest 11's default filter would emit the error on the
 * local EventEmitter, where nobody hears it.
 */
@Catch()
export class ConnectionExceptionFilter implements WsExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const conn = host.switchToWs().getClient<unknown>();
    if (!(conn instanceof Connection)) throw exception;
    if (exception instanceof FrameError) conn.sendError(exception.code, exception.message, exception.channel);
    else conn.fail(exception);
  }
}
