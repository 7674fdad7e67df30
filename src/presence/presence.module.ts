import { Global, Module } from '@nestjs/common';
import { Denials } from './denials';

/** What the core keeps on top of presence storage (which the mode module provides). */
@Global()
@Module({ providers: [Denials], exports: [Denials] })
export class PresenceModule {}
