import { Module } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection, type OnGatewayDisconnect } from '@nestjs/websockets';
import { z } from 'zod';
import type { Connection } from '../../src/connection/connection';
import { FrameError } from '../../src/connection/frames';
import { UpgradeGuards } from '../../src/upgrade/gateway-metadata';
import { RealtimeGateway } from '../../src/upgrade/realtime-gateway.decorator';
import { AuthenticateGuard } from '../../src/upgrade/guards/authenticate.guard';

/**
 * A gateway that exists only in tests, to drive the shared core through handlers that reply, refuse,
 * throw, or flood their own socket.
 */
@RealtimeGateway({
  name: 'echo',
  path: '/test/echo/:room',
  frames: {
    say: z.object({ type: z.literal('say'), text: z.string().max(100) }),
    flood: z.object({ type: z.literal('flood'), count: z.number().int().max(10_000), size: z.number().int().max(1 << 20) }),
  },
})
@UpgradeGuards(AuthenticateGuard)
export class EchoGateway implements OnGatewayConnection, OnGatewayDisconnect {
  readonly disconnected: string[] = [];

  handleConnection(conn: Connection): void {
    if (conn.user.sub === 'explode-on-connect') throw new Error('bug in handleConnection');
    conn.send({ type: 'welcome', room: conn.params.room, user: conn.user.sub });
  }

  handleDisconnect(conn: Connection): void {
    this.disconnected.push(conn.user.sub);
  }

  @SubscribeMessage('say')
  say(@ConnectedSocket() conn: Connection, @MessageBody() frame: { text: string }) {
    return { type: 'said', text: frame.text, by: conn.user.sub };
  }

  @SubscribeMessage('refuse')
  refuse(): never {
    throw new FrameError('message_too_long', 'that was too long');
  }

  @SubscribeMessage('boom')
  boom(): never {
    throw new Error('bug in a handler');
  }

  @SubscribeMessage('later')
  async later(): Promise<never> {
    await Promise.resolve();
    throw new Error('bug in an async handler');
  }

  @SubscribeMessage('flood')
  flood(@ConnectedSocket() conn: Connection, @MessageBody() frame: { count: number; size: number }) {
    const payload = { type: 'blob', data: 'x'.repeat(frame.size) };
    for (let i = 0; i < frame.count; i++) conn.send(payload);
  }
}

@Module({ providers: [EchoGateway] })
export class EchoModule {}
