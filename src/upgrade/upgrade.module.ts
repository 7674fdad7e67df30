import { Global, Module } from '@nestjs/common';
import { AuthenticateGuard } from './guards/authenticate.guard';
import { CapacityGuard } from './guards/capacity.guard';
import { ChannelGuard } from './guards/channel.guard';
import { OriginGuard } from './guards/origin.guard';
import { ResumeGuard } from './guards/resume.guard';
import { RolesGuard } from './guards/roles.guard';
import { Streams } from './streams';

const guards = [OriginGuard, AuthenticateGuard, RolesGuard, ChannelGuard, ResumeGuard, CapacityGuard];

/** The reusable upgrade guards; gateways list them with @UpgradeGuards. */
@Global()
@Module({ providers: [...guards, Streams], exports: [...guards, Streams] })
export class UpgradeModule {}
