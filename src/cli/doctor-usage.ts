/**
 * The doctor's usage, apart from the doctor: `realtime-gateway doctor --help` prints it without loading the
 * gateways the doctor checks tokens against (about 0.8 s of CPU of its 1 s; docs/benchmarks.md, "Start-up").
 */
export const DOCTOR_USAGE = `Usage: realtime-gateway doctor <ws-url> [--token <jwt>]   (or: npm run doctor -- <ws-url> [--token <jwt>])

Connects to a realtime-gateway endpoint step by step and says what is wrong: the URL, DNS, the TCP port,
TLS, the token (read without the key), the HTTP answer to the upgrade, and on success the ping round trip.
When something on the way blocks the upgrade, it tries GET /sse (Server-Sent Events) with the same token.
Exit 0 when healthy, 1 when a problem was found.`;
