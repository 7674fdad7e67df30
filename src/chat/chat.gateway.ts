import { Inject, type OnModuleDestroy } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { randomUUID } from 'node:crypto';
import { MESSAGE_BUS, type MessageBus } from '../bus/message-bus';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { FrameError } from '../connection/frames';
import { UpgradeGuards } from '../gateway/gateway-metadata';
import { RealtimeGateway } from '../gateway/realtime-gateway.decorator';
import { LOGGER, type Logger } from '../logging/logger';
import { PRESENCE, type Presence } from '../presence/presence';
import { RedisUnavailableError } from '../redis/redis-connections';
import { RoomChannels } from '../rooms/room-channels';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { CHAT_FRAMES, MAX_MESSAGE_CHARS, type ChatBusMessage } from './chat.frames';
import { ChatMemberGuard, ChatRoomGuard, roomGroup } from './chat-room.guard';

function checkLength(message: string): void {
  if (message.length > MAX_MESSAGE_CHARS) {
    throw new FrameError('message_too_long', `messages are limited to ${MAX_MESSAGE_CHARS} characters (got ${message.length})`);
  }
}

/**
 * `/ws/chat/:room`: rooms with join/leave notices carrying the member list, messages to everyone (sender
 * included) and private messages to one member, wherever each member is connected. Membership is a presence
 * claim per user, so the member list and the duplicate rule hold across replicas.
 */
@RealtimeGateway({ name: 'chat', path: '/ws/chat/:room', frames: CHAT_FRAMES })
@UpgradeGuards(OriginGuard, AuthenticateGuard, ChatRoomGuard, CapacityGuard, ChatMemberGuard)
export class ChatGateway implements OnGatewayConnection, OnModuleDestroy {
  private readonly rooms: RoomChannels<ChatBusMessage>;
  private readonly joined = new WeakMap<Connection, Promise<void>>();
  private readonly offNodeGone: () => void;

  constructor(
    @Inject(MESSAGE_BUS) bus: MessageBus,
    @Inject(PRESENCE) private readonly presence: Presence,
    connections: ConnectionManager,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.rooms = new RoomChannels(bus, connections.registry, (_room, { to, frame }, members) => {
      for (const conn of members) if (to === undefined || conn.user.sub === to) conn.send(frame);
    });
    // Members whose replica died left without a goodbye: each replica tells its own local members.
    this.offNodeGone = presence.onNodeGone((_node, claims) => {
      const left = claims.filter((c) => c.group.startsWith('chat:'));
      for (const group of new Set(left.map((c) => c.group))) {
        const locals = this.rooms.localMembers(group);
        if (locals.size === 0) continue;
        void this.presence.members(group).then((members) => {
          const users = [...members.keys()].sort();
          for (const { member } of left.filter((c) => c.group === group)) {
            for (const conn of locals) conn.send({ type: 'system', event: 'leave', user: member, users });
          }
        }, () => undefined);
      }
    });
  }

  onModuleDestroy(): void {
    this.offNodeGone();
  }

  handleConnection(conn: Connection): void {
    const room = roomGroup(conn.params.room);
    const user = conn.user.sub;
    // Announced before the membership is released (after this), so a rejoin cannot overtake the leave.
    conn.onClose(() => conn.finishing(this.announce(room, 'leave', user)));
    const joined = (async () => {
      await this.rooms.join(conn, room);
      await this.announce(room, 'join', user);
    })();
    this.joined.set(conn, joined);
    joined.catch((error) => conn.fail(error));
  }

  @SubscribeMessage('message')
  async message(@ConnectedSocket() conn: Connection, @MessageBody() frame: { message: string }): Promise<void> {
    checkLength(frame.message);
    await this.joined.get(conn);
    const room = roomGroup(conn.params.room);
    await this.publish(room, { frame: { type: 'message', id: randomUUID(), user: conn.user.sub, message: frame.message, ts: Date.now() } });
  }

  @SubscribeMessage('private')
  async private(@ConnectedSocket() conn: Connection, @MessageBody() frame: { to: string; message: string }) {
    checkLength(frame.message);
    await this.joined.get(conn);
    const room = roomGroup(conn.params.room);
    const members = await this.withPresence(() => this.presence.members(room));
    if (!members.has(frame.to)) throw new FrameError('user_not_found', `no user "${frame.to}" in this room`);
    const out = { type: 'private' as const, id: randomUUID(), from: conn.user.sub, to: frame.to, message: frame.message, ts: Date.now() };
    await this.publish(room, { to: frame.to, frame: out });
    if (frame.to !== conn.user.sub) return out; // the sender's echo
  }

  private async announce(room: string, event: 'join' | 'leave', user: string): Promise<void> {
    try {
      const members = await this.presence.members(room);
      // On leave the membership is still held (it is released after this), so drop it from the list.
      if (event === 'leave') members.delete(user);
      const users = [...members.keys()].sort();
      await this.rooms.publish(room, { frame: { type: 'system', event, user, users } });
    } catch (error) {
      this.log.warn({ event: 'announce_failed', gateway: 'chat', type: event, err: (error as Error).message }, 'could not tell the room');
    }
  }

  private async publish(room: string, message: ChatBusMessage): Promise<void> {
    await this.withPresence(() => this.rooms.publish(room, message));
  }

  /** Redis down: the sender learns that this message went nowhere, and the socket stays open. */
  private async withPresence<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof RedisUnavailableError) throw new FrameError('unavailable', 'the room is unreachable right now (Redis is down); retry shortly');
      throw error;
    }
  }
}
