import { Inject, type OnModuleInit } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { ChannelHub } from '../channels/channel-hub';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { AllowRoles, UpgradeGuards } from '../upgrade/gateway-metadata';
import { RealtimeGateway } from '../upgrade/realtime-gateway.decorator';
import { Rooms } from '../rooms/rooms';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { ChannelGuard } from '../upgrade/guards/channel.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { RolesGuard } from '../upgrade/guards/roles.guard';
import { SeatGuard } from './seat.guard';
import { signalingChannel, SignalingChannelPolicy } from './signaling-channel';
import { SignalingPathGuard } from './signaling-path.guard';
import { otherSeat, SIGNALING_FRAMES, type RelayType, type Seat } from './signaling.frames';
import { iceServersFrame } from './turn-credentials';

/**
 * `/ws/signaling/:consultationId/:userType`: a WebRTC signaling relay between the doctor and the patient of a
 * consultation, wherever each is connected. The consultation is a room; the seats are presence claims.
 */
@RealtimeGateway({
  name: 'signaling',
  path: '/ws/signaling/:consultationId/:userType',
  frames: SIGNALING_FRAMES,
  roleParam: 'userType',
  channel: (params) => signalingChannel(params.consultationId),
})
// ChannelGuard before the seat: a token that does not name the consultation (signaling is `claim` by default)
// gets 403 forbidden_channel even at an occupied seat, and never learns whether it is.
@UpgradeGuards(OriginGuard, AuthenticateGuard, RolesGuard, SignalingPathGuard, ChannelGuard, CapacityGuard, SeatGuard)
@AllowRoles('doctor', 'patient')
export class SignalingGateway implements OnGatewayConnection, OnModuleInit {
  constructor(
    private readonly hub: ChannelHub,
    private readonly rooms: Rooms,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    const policy = new SignalingChannelPolicy();
    this.hub.register(policy);
    this.rooms.register(policy);
  }

  handleConnection(conn: Connection): void {
    // Queued before entering the room, so it precedes peer-joined: a client builds its RTCPeerConnection with
    // these servers before an offer can arrive.
    if (this.config.turn) conn.send(iceServersFrame(this.config.turn, conn.user));
    this.rooms.enter(conn, signalingChannel(conn.params.consultationId));
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
    await this.rooms.whenEntered(conn);
    const seat = conn.params.userType as Seat;
    const to = otherSeat(seat);
    const room = signalingChannel(conn.params.consultationId);
    if (!(await this.rooms.members(room)).has(to)) {
      throw new FrameError('peer_not_connected', `the ${to} is not connected to this consultation yet`);
    }
    await this.rooms.publishFromMember(room, { to, frame: { type, from: seat, payload } });
  }
}
