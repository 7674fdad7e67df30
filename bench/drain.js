#!/usr/bin/env node
// node bench/drain.js [sockets=1000]: how long a SIGTERM drain takes with the default DRAIN_WINDOW_MS and
// SHUTDOWN_GRACE_MS, and how the 1012 closes spread over it (what the other replicas see as reconnects).
'use strict';
const { spawn } = require('node:child_process');
const { join } = require('node:path');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');

const SOCKETS = Number(process.argv[2] ?? 1000);
const SECRET = 'bench-secret-bench-secret-bench-secret!!';
const PORT = 18000 + Math.floor(Math.random() * 1000);

async function main() {
  const child = spawn(process.execPath, [join(__dirname, '..', 'dist', 'main.js')], {
    env: { PATH: process.env.PATH, PORT: String(PORT), HOST: '127.0.0.1', INTERNAL_PORT: '0', INTERNAL_HOST: '127.0.0.1', JWT_SECRET: SECRET, LOG_LEVEL: 'warn', MAX_UPGRADES_PER_SEC: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve({ code, at: performance.now() })));
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${PORT}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const token = jwt.sign({ sub: 'drain', role: 'authority' }, SECRET, { expiresIn: 600 });
  const closes = [];
  for (let opened = 0; opened < SOCKETS; ) {
    const batch = Math.min(100, SOCKETS - opened);
    await Promise.all(Array.from({ length: batch }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${PORT}/api/alerts/subscribe`, ['bearer', token]);
      ws.on('open', resolve);
      ws.on('error', reject);
      ws.on('close', (code) => closes.push({ code, at: performance.now() }));
    })));
    opened += batch;
  }
  const start = performance.now();
  child.kill('SIGTERM');
  const exit = await exited;
  const times = closes.map((c) => c.at - start).sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(0);
  const codes = [...new Set(closes.map((c) => c.code))];
  console.log(JSON.stringify({
    sockets: SOCKETS,
    closeCodes: codes,
    firstCloseMs: q(0), medianCloseMs: q(0.5), lastCloseMs: q(1),
    exitCode: exit.code, exitAfterMs: (exit.at - start).toFixed(0),
  }, null, 2));
}

main().catch((error) => { console.error(error); process.exit(1); });
