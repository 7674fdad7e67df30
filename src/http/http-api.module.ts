import { Global, Module } from '@nestjs/common';
import { JwtVerifier } from '../auth/jwt-verifier';
import { MESSAGE_LIMITS, type MessageLimits } from '../channels/message-limits';
import { LOGGER, type Logger } from '../logging/logger';
import { Denials } from '../presence/denials';
import { JsonApi } from './json-api';
import { Listeners } from './listeners';

/** The server API's shared door (auth, body, errors); features and the server API register routes on it. */
@Global()
@Module({
  providers: [
    Listeners,
    {
      provide: JsonApi,
      inject: [JwtVerifier, MESSAGE_LIMITS, LOGGER, Denials],
      useFactory: (verifier: JwtVerifier, limits: MessageLimits, log: Logger, denials: Denials) => new JsonApi(verifier, limits, log, denials),
    },
  ],
  exports: [JsonApi, Listeners],
})
export class HttpApiModule {}
