import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ChannelHub } from './channel-hub';
import { MESSAGE_LIMITS, MessageLimits } from './message-limits';
import { NamespaceRegistry } from './namespaces';
import { ChannelPermissions } from './permissions';
import { SubscribeProxy } from './subscribe-proxy';

/** The channel core every feature uses; the broker behind it comes from the mode module. */
@Global()
@Module({
  providers: [
    ChannelHub,
    NamespaceRegistry,
    ChannelPermissions,
    SubscribeProxy,
    {
      provide: MESSAGE_LIMITS,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new MessageLimits(config.maxPublishBytes, config.maxJsonDepth),
    },
  ],
  exports: [ChannelHub, NamespaceRegistry, ChannelPermissions, MESSAGE_LIMITS],
})
export class ChannelsModule {}
