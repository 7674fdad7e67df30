#!/usr/bin/env node
// `npm run build` (--force) and the pre-step of `npm start`, `npm run token|doctor|vapid|cluster`, the benches and
// `npm pack`: compiles src/ to dist/ only when dist/ is not the build of the current sources.
//
// Why not just `tsc` (already incremental): loading TypeScript and checking the build info took 2.9 s of a 3.2 s
// `npm run token` on a quiet 2-core machine, 5 s and more under load (docs/benchmarks.md, "Start-up").
//
// Current means: dist/.build-stamp holds the SHA-256 of every input's path and content (src/**, tsconfig*.json,
// package.json, the TypeScript version), written after a successful build, and every src/**/*.ts has its
// dist/**/*.js. Content, not mtimes: a file added, removed, edited, or restored with an older mtime (git checkout,
// tar, cp -p) changes the hash. Hashing the 155 files of src/ (1.3 MB) costs about 80 ms of CPU on top of Node's
// own start (0.20 s against 0.12 s for `node -e 0`, on a loaded 2-core machine). A build removes the stamp first and writes it only on success, so after a failure the next start
// tries again.
'use strict';
const { createHash } = require('node:crypto');
const { spawnSync } = require('node:child_process');
const { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { join, relative } = require('node:path');

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.build-stamp');
const INPUT_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json'];

function walk(dir, out = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, out);
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

function typescriptVersion() {
  try {
    return JSON.parse(readFileSync(require.resolve('typescript/package.json', { paths: [ROOT] }), 'utf8')).version;
  } catch {
    return 'none';
  }
}

/** The hash of the build's inputs, and the src/**\/*.ts files (relative) whose .js must exist in dist/. */
function inputs() {
  const sources = walk(join(ROOT, 'src')).sort();
  const hash = createHash('sha256').update(`typescript ${typescriptVersion()}\0`);
  for (const file of [...INPUT_FILES.map((name) => join(ROOT, name)), ...sources]) {
    hash.update(`${relative(ROOT, file)}\0`);
    hash.update(existsSync(file) ? readFileSync(file) : '(missing)');
    hash.update('\0');
  }
  const outputs = sources.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts')).map((file) => relative(join(ROOT, 'src'), file).replace(/\.ts$/, '.js'));
  return { digest: hash.digest('hex'), outputs };
}

/** Why dist/ must be rebuilt, or undefined when it is current; `full` when tsc's build info cannot be trusted. */
function staleness({ digest, outputs }) {
  if (!existsSync(DIST)) return { reason: 'no dist/ yet', full: true };
  // tsc's incremental build does not re-emit an output deleted since the last build: only a full build does.
  const missing = outputs.find((file) => !existsSync(join(DIST, file)));
  if (missing) return { reason: `dist/${missing} is missing`, full: true };
  if (!existsSync(STAMP)) return { reason: 'no build stamp in dist/' };
  if (readFileSync(STAMP, 'utf8').trim() !== digest) return { reason: 'sources changed since the last build' };
  return undefined;
}

/** Removes dist/ outputs whose source is gone (tsc leaves them), so that npm pack cannot ship them. */
function pruneOrphans() {
  for (const file of walk(DIST)) {
    const match = /^(.*?)(\.d\.ts|\.js)(\.map)?$/.exec(relative(DIST, file));
    if (match && !existsSync(join(ROOT, 'src', `${match[1]}.ts`))) rmSync(file);
  }
}

function build(digest, full) {
  if (full) rmSync(join(DIST, '.tsbuildinfo'), { force: true });
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  // tsc emits even when it reports errors: without this, a failed build of B followed by a return to the sources
  // of the stamp A would leave B's output in dist/ under A's stamp.
  rmSync(STAMP, { force: true });
  // tsc reports errors on stdout: sent to stderr, so that TOKEN=$(npm run --silent token ...) never holds them.
  const result = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  if (result.status !== 0) {
    process.stderr.write('The build of dist/ failed (the TypeScript errors above): fix them and run the command again.\n');
    return result.status ?? 1;
  }
  chmodSync(join(DIST, 'cli', 'realtime-gateway.js'), 0o755);
  writeFileSync(STAMP, `${digest}\n`);
  return 0;
}

function main() {
  // An installed package has dist/ and no src/: nothing to build.
  if (!existsSync(join(ROOT, 'src'))) return 0;
  const force = process.argv.includes('--force');
  const current = inputs();
  const stale = staleness(current);
  let status = 0;
  if (force || stale) {
    // stderr: stdout belongs to the command that follows (TOKEN=$(npm run --silent token ...)).
    if (stale) process.stderr.write(`Building dist/ (${stale.reason})...\n`);
    status = build(current.digest, stale?.full);
  }
  // Also when current: an output whose source was removed since (tsc leaves it) must not reach npm pack.
  if (existsSync(DIST)) pruneOrphans();
  // The SDK package (packages/client) is built from src/client by its own script, which skips itself when current;
  // run only after a server build or when its dist/ is missing, so a current start pays no extra Node start (0.3 s).
  const client = join(ROOT, 'packages', 'client');
  if (status === 0 && existsSync(join(client, 'build.mjs')) && (force || stale || !existsSync(join(client, 'dist', 'index.cjs')))) {
    status = spawnSync(process.execPath, [join(client, 'build.mjs')], { cwd: ROOT, stdio: ['ignore', 2, 2] }).status ?? 1;
  }
  return status;
}

process.exitCode = main();
