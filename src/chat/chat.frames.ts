import { z } from 'zod';

/** Chat room names as they appear in the path. */
export const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
export const MAX_MESSAGE_CHARS = 500;

/**
 * Client → server frames of `/ws/chat/:room`. The 500-character limit is checked by the handler so that it
 * gets its own error code (`message_too_long`) rather than `invalid_message`.
 */
export const CHAT_FRAMES = {
  message: z.object({ type: z.literal('message'), message: z.string() }),
  private: z.object({ type: z.literal('private'), to: z.string().min(1).max(256), message: z.string() }),
};

export interface ChatMessageFrame {
  type: 'message';
  id: string;
  user: string;
  message: string;
  ts: number;
}

export interface PrivateFrame {
  type: 'private';
  id: string;
  from: string;
  to: string;
  message: string;
  ts: number;
}

export interface SystemFrame {
  type: 'system';
  event: 'join' | 'leave';
  user: string;
  users: string[];
}

/** What travels on a room's channel between replicas; `to` limits delivery to one user's sockets. */
export interface ChatBusMessage {
  to?: string;
  frame: ChatMessageFrame | PrivateFrame | SystemFrame;
}
