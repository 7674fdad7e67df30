import { Module } from '@nestjs/common';
import { SeatGuard } from './seat.guard';
import { SignalingPathGuard } from './signaling-path.guard';
import { SignalingGateway } from './signaling.gateway';

@Module({ providers: [SignalingGateway, SignalingPathGuard, SeatGuard] })
export class SignalingModule {}
