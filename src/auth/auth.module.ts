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
        // Verification is JwtVerifier's own (JwsVerifier); @nestjs/jwt only signs (dev tokens, tests).
        return { secret: config.jwt.signingSecret, signOptions: { algorithm: 'HS256', ...claims } };
      },
    }),
  ],
  providers: [JwtVerifier],
  exports: [JwtVerifier, JwtModule],
})
export class AuthModule {}
