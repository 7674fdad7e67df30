import { Injectable } from '@nestjs/common';
import type { UpgradeContext, UpgradeGuard } from '../upgrade/upgrade-guard';
import { UpgradeRefusal } from '../upgrade/upgrade-refusal';
import { CONSULTATION_ID, SEATS, type Seat } from './signaling.frames';

/** `consultationId` well-formed (400), `userType` a seat (400) that is the token's own role (403). */
@Injectable()
export class SignalingPathGuard implements UpgradeGuard {
  canUpgrade(ctx: UpgradeContext): void {
    const { consultationId, userType } = ctx.params;
    if (!CONSULTATION_ID.test(consultationId)) {
      throw new UpgradeRefusal(400, 'bad_request', 'consultationId must be 1-64 letters, digits, _ . or - (not . or ..)');
    }
    if (!SEATS.includes(userType as Seat)) {
      throw new UpgradeRefusal(400, 'bad_request', `userType must be one of ${SEATS.join(', ')}`);
    }
    if (ctx.user!.role !== userType) {
      // Declared as the gateway's roleParam, so the doctor can say so before connecting.
      throw new UpgradeRefusal(403, 'forbidden_role', `a token with role "${ctx.user!.role}" may not take the ${userType} seat`);
    }
  }
}
