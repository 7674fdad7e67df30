import { Global, Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { JwtVerifier } from './jwt-verifier';

@Global()
@Module({
  imports: [
    JwtModule.registerAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => {
        const { issuer, audience } = config.jwt;
        // jsonwebtoken rejects options that are present but undefined.
        const claims = { ...(issuer ? { issuer } : {}), ...(audience ? { audience } : {}) };
        return {
          // A KeyObject, not the string: jsonwebtoken re-imports a string key on every verify.
          secret: config.jwt.key,
          signOptions: { algorithm: config.jwt.algorithms[0], ...claims },
          verifyOptions: { algorithms: config.jwt.algorithms, ...claims },
        };
      },
    }),
  ],
  providers: [JwtVerifier],
  exports: [JwtVerifier],
})
export class AuthModule {}
