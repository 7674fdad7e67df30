import { Module } from '@nestjs/common';
import { ChatMemberGuard, ChatRoomGuard } from './chat-room.guard';
import { ChatGateway } from './chat.gateway';

@Module({ providers: [ChatGateway, ChatRoomGuard, ChatMemberGuard] })
export class ChatModule {}
