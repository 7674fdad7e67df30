import { Global, Module } from '@nestjs/common';
import { BanList } from './ban-list';

/** What the core keeps on top of presence storage (which the mode module provides). */
@Global()
@Module({ providers: [BanList], exports: [BanList] })
export class PresenceModule {}
