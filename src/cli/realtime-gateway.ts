#!/usr/bin/env node
/** `npx realtime-gateway <command>`: doctor, token, vapid, or start the service. */
const USAGE = `Usage: realtime-gateway <command>
  doctor <ws-url> [--token <jwt>]    diagnose a failing connection
  token --role <role> [--sub <id>]   print a token signed with the configured (or dev) key
  vapid [--json]                     print a new VAPID key pair for Web Push (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY)
  start                              run the service (same as npm start)
`;

const [command, ...rest] = process.argv.slice(2);
// The subcommands parse process.argv themselves.
process.argv = [process.argv[0], process.argv[1], ...rest];
// --help without loading the doctor itself, which loads every gateway (0.8 s of CPU).
if (command === 'doctor' && rest.some((arg) => arg === '--help' || arg === '-h')) process.stdout.write(`${(require('./doctor-usage') as { DOCTOR_USAGE: string }).DOCTOR_USAGE}\n`);
else if (command === 'doctor') void (require('./doctor') as { main: () => Promise<void> }).main();
else if (command === 'token') require('./token');
else if (command === 'vapid') (require('./vapid') as { main: () => void }).main();
else if (command === 'start') require('../main');
else {
  (command ? process.stderr : process.stdout).write(USAGE);
  process.exitCode = command && command !== '--help' && command !== '-h' ? 2 : 0;
}
