import { Inject, type OnModuleDestroy } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { MESSAGE_BUS, type MessageBus } from '../bus/message-bus';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { FrameError } from '../connection/frames';
import { AllowRoles, UpgradeGuards } from '../gateway/gateway-metadata';
import { RealtimeGateway } from '../gateway/realtime-gateway.decorator';
import { LOGGER, type Logger } from '../logging/logger';
import { PRESENCE, type Presence } from '../presence/presence';
import { RedisUnavailableError } from '../redis/redis-connections';
import { RoomChannels } from '../rooms/room-channels';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { RolesGuard } from '../upgrade/guards/roles.guard';
import { SeatGuard, seatGroup } from './seat.guard';
import { SignalingPathGuard } from './signaling-path.guard';
import { otherSeat, SIGNALING_FRAMES, type RelayType, type Seat, type SignalingMessage } from './signaling.frames';

/**
 * `/ws/signaling/:consultationId/:userType`: a WebRTC signaling relay between the doctor and the patient of a
 * consultation, wherever each is connected. The consultation is a room channel; the seats are presence claims.
 */
@RealtimeGateway({ name: 'signaling', path: '/ws/signaling/:consultationId/:userType', frames: SIGNALING_FRAMES })
@UpgradeGuards(OriginGuard, AuthenticateGuard, RolesGuard, SignalingPathGuard, CapacityGuard, SeatGuard)
@AllowRoles('doctor', 'patient')
export class SignalingGateway implements OnGatewayConnection, OnModuleDestroy {
  private readonly rooms: RoomChannels<SignalingMessage>;
  /** Resolves when the connection's room subscription is live; frames wait for it. */
  private readonly joined = new WeakMap<Connection, Promise<void>>();
  private readonly offNodeGone: () => void;

  constructor(
    @Inject(MESSAGE_BUS) bus: MessageBus,
    @Inject(PRESENCE) private readonly presence: Presence,
    private readonly connections: ConnectionManager,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.rooms = new RoomChannels(bus, connections.registry, (_room, message, members) => {
      for (const conn of members) if (conn.params.userType === message.to) conn.send(message.frame);
    });
    // A peer whose replica died: its seat vanished after the presence TTL; tell the one still here.
    this.offNodeGone = presence.onNodeGone((_node, claims) => {
      for (const { group, member } of claims) {
        if (!group.startsWith('signaling:')) continue;
        for (const conn of this.rooms.localMembers(group)) {
          if (conn.params.userType !== member) conn.send({ type: 'peer-left', role: member });
        }
      }
    });
  }

  onModuleDestroy(): void {
    this.offNodeGone();
  }

  handleConnection(conn: Connection): void {
    const seat = conn.params.userType as Seat;
    const room = seatGroup(conn.params.consultationId);
    // Before the seat is released (after this), so a successor's peer-joined cannot overtake this peer-left.
    conn.onClose(() => conn.finishing(this.announce(room, seat, 'peer-left')));
    const joined = (async () => {
      await this.rooms.join(conn, room);
      const seats = await this.presence.members(room);
      if (seats.has(otherSeat(seat))) conn.send({ type: 'peer-joined', role: otherSeat(seat) });
      await this.announce(room, seat, 'peer-joined');
    })();
    this.joined.set(conn, joined);
    joined.catch((error) => conn.fail(error));
  }

  @SubscribeMessage('offer')
  offer(@ConnectedSocket() conn: Connection, @MessageBody() frame: { payload: unknown }) {
    return this.relay(conn, 'offer', frame.payload);
  }

  @SubscribeMessage('answer')
  answer(@ConnectedSocket() conn: Connection, @MessageBody() frame: { payload: unknown }) {
    return this.relay(conn, 'answer', frame.payload);
  }

  @SubscribeMessage('ice-candidate')
  iceCandidate(@ConnectedSocket() conn: Connection, @MessageBody() frame: { payload: unknown }) {
    return this.relay(conn, 'ice-candidate', frame.payload);
  }

  private async relay(conn: Connection, type: RelayType, payload: unknown): Promise<void> {
    await this.joined.get(conn);
    const seat = conn.params.userType as Seat;
    const to = otherSeat(seat);
    const room = seatGroup(conn.params.consultationId);
    try {
      if (!(await this.presence.members(room)).has(to)) {
        throw new FrameError('peer_not_connected', `the ${to} is not connected to this consultation yet`);
      }
      await this.rooms.publish(room, { kind: 'relay', to, frame: { type, from: seat, payload } });
    } catch (error) {
      if (!(error instanceof RedisUnavailableError)) throw error;
      throw new FrameError('unavailable', `cannot reach the ${to} right now (Redis is down); retry shortly`);
    }
  }

  private async announce(room: string, seat: Seat, type: 'peer-joined' | 'peer-left'): Promise<void> {
    try {
      await this.rooms.publish(room, { kind: 'presence', to: otherSeat(seat), frame: { type, role: seat } });
    } catch (error) {
      this.log.warn({ event: 'announce_failed', gateway: 'signaling', type, err: (error as Error).message }, 'could not tell the peer');
    }
  }
}
