import { type OnModuleInit } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { UpgradeGuards } from '../upgrade/gateway-metadata';
import { RealtimeGateway } from '../upgrade/realtime-gateway.decorator';
import { Rooms } from '../rooms/rooms';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { ChannelGuard } from '../upgrade/guards/channel.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { ResumeGuard, type ResumeRequest } from '../upgrade/guards/resume.guard';
import { chatChannel, ChatChannelPolicy } from './chat-channel';
import { CHAT_FRAMES, MAX_MESSAGE_CHARS } from './chat.frames';
import { ChatMemberGuard, ChatRoomGuard } from './chat-room.guard';

const CHAT_ATTACH_FRAMES: AttachFrames = {
  welcome: (positions, conn) => {
    const room = positions.get(chatChannel(conn.params.room));
    return { type: 'welcome', epoch: room?.epoch, id: room?.id };
  },
  resumed: (recovered) => ({ type: 'resumed', recovered }),
};

function checkLength(message: string): void {
  if (message.length > MAX_MESSAGE_CHARS) {
    throw new FrameError('message_too_long', `messages are limited to ${MAX_MESSAGE_CHARS} characters (got ${message.length})`);
  }
}

/**
 * `/ws/chat/:room`: rooms with join/leave notices carrying the member list, messages to everyone (sender
 * included, kept in the room's history and resumable with `?since=&epoch=`) and private messages to one
 * member, wherever each member is connected. Membership is a presence claim per user (ChatMemberGuard).
 */
@RealtimeGateway({ name: 'chat', path: '/ws/chat/:room', frames: CHAT_FRAMES, channel: (params) => chatChannel(params.room) })
@UpgradeGuards(OriginGuard, AuthenticateGuard, ChatRoomGuard, ChannelGuard, ResumeGuard, CapacityGuard, ChatMemberGuard)
export class ChatGateway implements OnGatewayConnection, OnModuleInit {
  constructor(
    private readonly hub: ChannelHub,
    private readonly rooms: Rooms,
  ) {}

  onModuleInit(): void {
    const policy = new ChatChannelPolicy();
    this.hub.register(policy);
    this.rooms.register(policy);
  }

  handleConnection(conn: Connection): void {
    const resume = conn.attributes.resume as ResumeRequest | undefined;
    this.rooms.enter(conn, chatChannel(conn.params.room), { since: resume?.main, frames: CHAT_ATTACH_FRAMES });
  }

  @SubscribeMessage('message')
  async message(@ConnectedSocket() conn: Connection, @MessageBody() frame: { message: string }): Promise<void> {
    checkLength(frame.message);
    await this.rooms.whenEntered(conn);
    await this.rooms.publishFromMember(chatChannel(conn.params.room), { type: 'message', user: conn.user.sub, message: frame.message });
  }

  @SubscribeMessage('private')
  async private(@ConnectedSocket() conn: Connection, @MessageBody() frame: { to: string; message: string }) {
    checkLength(frame.message);
    await this.rooms.whenEntered(conn);
    const room = chatChannel(conn.params.room);
    if (!(await this.rooms.users(room)).has(frame.to)) throw new FrameError('user_not_found', `no user "${frame.to}" in this room`);
    const sent = await this.rooms.publishFromMember(room, { type: 'private', from: conn.user.sub, to: frame.to, message: frame.message }, false);
    // The sender's echo (unless it wrote to itself, which the channel already delivered).
    if (frame.to !== conn.user.sub) return { type: 'private', from: conn.user.sub, to: frame.to, message: frame.message, ts: Math.floor(sent.ts) };
  }
}
