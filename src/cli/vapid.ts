import { generateKeyPairSync } from 'node:crypto';
import { parseArgs } from 'node:util';

const USAGE = `Usage: npm run vapid [-- --json]   (or: realtime-gateway vapid [--json])

Prints a new VAPID key pair (RFC 8292: ECDSA on P-256, base64url) for Web Push, as environment lines:
  VAPID_PUBLIC_KEY=<87 characters>   the application server key browsers subscribe with (GET /push/vapid-public-key)
  VAPID_PRIVATE_KEY=<43 characters>  the signing key: keep it in a secret store, never in the image or the chart's values
Set VAPID_SUBJECT beside them (mailto:ops@example.com or an https: URL). Make the pair once per deployment: every
push subscription is tied to the public key, so a new pair means every browser subscribes again.
--json prints {"publicKey","privateKey"} instead.`;

/** A new pair: the uncompressed point (0x04 || x || y) and the private scalar, each base64url without padding. */
export function vapidKeys(): { publicKey: string; privateKey: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  // JWK coordinates and d are fixed-length for P-256 (RFC 7518 §6.2.1): no leading-zero padding to add.
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  return { publicKey: point.toString('base64url'), privateKey: jwk.d! };
}

export function main(): void {
  let values: { json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`vapid: ${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const keys = vapidKeys();
  if (values.json) process.stdout.write(`${JSON.stringify(keys)}\n`);
  else process.stdout.write(`VAPID_PUBLIC_KEY=${keys.publicKey}\nVAPID_PRIVATE_KEY=${keys.privateKey}\n`);
}

if (require.main === module) main();
