import { Global, Module } from '@nestjs/common';
import { Rooms } from './rooms';

@Global()
@Module({ providers: [Rooms], exports: [Rooms] })
export class RoomsModule {}
