#!/usr/bin/env node
// node bench/charts.js [results.json] [--out dir]: the charts of docs/benchmarks.md and the README, rendered as
// hand-written SVG from the recorded figures (docs/bench-results.json by default) into docs/:
//   chart-memory.svg    idle memory per connection (RSS and heap after GC; the scale run's too, if recorded)
//   chart-fanout.svg    deliveries per server CPU-second, 1 KB, single broadcasts and bursts of 8
//   chart-latency.svg   cross-replica publish → deliver p50 / p99 / p99.9 (log scale)
// The gateway (G) against bare `ws` (W, W8) and Socket.IO (S), medians over the run's rounds. `npm run bench --
// --write` and `npm run bench:scale -- --write` call it; test/unit/bench-charts.spec.ts checks the committed files
// are what the recorded JSON renders to. No chart library: the output must be byte-stable across machines.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const DOCS = join(__dirname, '..', 'docs');
const SERIES = {
  W: { label: 'W: bare ws', color: '#8a8a8a' },
  W8: { label: 'W8: ws, burst corked', color: '#c4c4c4' },
  G: { label: 'G: this gateway', color: '#2f6fdf' },
  S: { label: 'S: Socket.IO 4.8', color: '#e07b39' },
};

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const r1 = (x) => Math.round(x * 10) / 10; // coordinates to 0.1 px: stable text

/** A round axis maximum at or above `max`: 1, 2 or 5 × a power of ten. */
function niceMax(max) {
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max);
}

/**
 * A grouped bar chart. groups: [{ label, bars: [{ series, value, text }] }]; `log`: a log-scale axis (decades).
 * Every bar carries a <title> (series, group, exact value) and its value printed above it.
 */
function barChart({ title, subtitle, axis, groups, log = false }) {
  const W = 760;
  const H = 400;
  const m = { left: 78, right: 16, top: 64, bottom: 78 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => Number.isFinite(v) && v > 0);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>${esc(title)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${m.left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${m.left}" y="44" fill="#555555">${esc(subtitle)}</text>`);
  let y;
  const ticks = [];
  if (log) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
    const span = Math.log10(hi) - Math.log10(lo);
    y = (v) => m.top + plotH - ((Math.log10(v) - Math.log10(lo)) / span) * plotH;
    for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v);
  } else {
    const hi = niceMax(Math.max(...values));
    y = (v) => m.top + plotH - (v / hi) * plotH;
    for (let i = 0; i <= 5; i++) ticks.push((hi * i) / 5);
  }
  const tickText = (v) => (v >= 1000 ? `${r1(v / 1000)}k` : String(r1(v)));
  for (const t of ticks) {
    out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${r1(y(t))}" y2="${r1(y(t))}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${m.left - 6}" y="${r1(y(t) + 4)}" text-anchor="end" fill="#555555">${tickText(t)}</text>`);
  }
  out.push(`<text transform="translate(16 ${r1(m.top + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#333333">${esc(axis)}</text>`);
  const groupW = plotW / groups.length;
  for (const [gi, g] of groups.entries()) {
    const x0 = m.left + gi * groupW;
    const barW = Math.min(44, (groupW - 24) / g.bars.length);
    const start = x0 + (groupW - barW * g.bars.length) / 2;
    for (const [bi, b] of g.bars.entries()) {
      if (!Number.isFinite(b.value) || b.value <= 0) continue;
      const x = start + bi * barW;
      const top = y(b.value);
      out.push(
        `<rect x="${r1(x + 1)}" y="${r1(top)}" width="${r1(barW - 2)}" height="${r1(m.top + plotH - top)}" fill="${SERIES[b.series].color}">` +
          `<title>${esc(`${b.series}, ${g.label.replace(/\n/g, ' ')}: ${b.text}`)}</title></rect>`,
      );
      out.push(`<text x="${r1(x + barW / 2)}" y="${r1(top - 4)}" text-anchor="middle" font-size="10" fill="#222222">${esc(b.short ?? b.text)}</text>`);
    }
    g.label.split('\n').forEach((line, li) => out.push(`<text x="${r1(x0 + groupW / 2)}" y="${m.top + plotH + 16 + li * 14}" text-anchor="middle" fill="#333333">${esc(line)}</text>`));
  }
  out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${m.top + plotH}" y2="${m.top + plotH}" stroke="#333333"/>`);
  const used = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  let lx = m.left;
  for (const s of used) {
    out.push(`<rect x="${lx}" y="${H - 22}" width="12" height="12" fill="${SERIES[s].color}"/>`);
    out.push(`<text x="${lx + 16}" y="${H - 12}">${esc(SERIES[s].label)}</text>`);
    lx += 40 + SERIES[s].label.length * 6.5;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

const kb = (bytes) => ({ value: bytes / 1024, text: `${(bytes / 1024).toFixed(2)} KB`, short: (bytes / 1024).toFixed(1) });

function memoryChart(results) {
  const idle = results.idle;
  const groups = [];
  // Runs before issue 26 connected one user N times: said on the chart, since it flatters the gateway's memory.
  const users = ` · ${results.users ?? 'one user for every connection'}`;
  if (idle) {
    const col = (peer, key) => median(idle[peer].map((x) => x[key]));
    groups.push({ label: `idle RSS\n${idle.sockets.toLocaleString('en')} sockets`, bars: [['W', 'ws'], ['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => ({ series, ...kb(col(peer, 'rssPerConn')) })) });
    groups.push({ label: `idle heap after GC\n${idle.sockets.toLocaleString('en')} sockets`, bars: [['W', 'ws'], ['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => ({ series, ...kb(col(peer, 'heapPerConn')) })) });
  }
  const scale = results.scale;
  if (scale) {
    const col = (peer, key) => median((scale.peers[peer] ?? []).map((x) => x[key]));
    const n = scale.connections.toLocaleString('en');
    groups.push({ label: `idle RSS\n${n} (bench:scale)`, bars: [['W', 'ws'], ['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => ({ series, ...kb(col(peer, 'rssPerConn')) })) });
    groups.push({ label: `idle heap after GC\n${n} (bench:scale)`, bars: [['W', 'ws'], ['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => ({ series, ...kb(col(peer, 'heapPerConn')) })) });
  }
  return barChart({
    title: 'Memory per idle connection (lower is better)',
    subtitle: `${results.command} · ${results.date}${users}${scale ? ` · bench:scale ${scale.date}, each its own user` : ''}`,
    axis: 'KB per connection',
    groups,
  });
}

function fanoutChart(results) {
  const groups = Object.entries(results.fanout).map(([key, peers]) => {
    const [mode, size] = key.split('/');
    const bars = [['W', 'ws'], ['W8', 'ws8'], ['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => {
      const v = median(peers[peer] ?? []);
      return { series, value: v, text: `${Math.round(v).toLocaleString('en')} deliveries per CPU-second`, short: `${Math.round(v / 1000)}k` };
    });
    return { label: `${mode === 'burst8' ? 'bursts of 8' : 'single broadcasts'}\n${Number(size).toLocaleString('en')} subscribers`, bars };
  });
  return barChart({
    title: 'Fan-out: 1 KB deliveries per server CPU-second (higher is better)',
    subtitle: `${results.command} · ${results.date} · ${results.machine}`,
    axis: 'deliveries per CPU-second',
    groups,
  });
}

function latencyChart(results) {
  const rates = [...new Set(results.latency.map((l) => l.rate))].sort((a, b) => a - b);
  const groups = [];
  for (const rate of rates) {
    for (const [key, label] of [['p50', 'p50'], ['p99', 'p99'], ['p999', 'p99.9']]) {
      const bars = [['G', 'gateway'], ['S', 'socketio']].map(([series, peer]) => {
        const v = median(results.latency.filter((l) => l.peer === peer && l.rate === rate).map((l) => l[key]));
        return { series, value: v, text: `${v.toFixed(2)} ms`, short: v >= 10 ? v.toFixed(0) : v.toFixed(1) };
      });
      groups.push({ label: `${label}\n${rate.toLocaleString('en')}/s`, bars });
    }
  }
  return barChart({
    title: 'Cross-replica publish → deliver latency, 2 replicas (lower is better)',
    subtitle: `${results.command} · ${results.date} · 10 subscribers on the other replica · log scale`,
    axis: 'milliseconds',
    groups,
    log: true,
  });
}

/** The charts as { file name: SVG text }. */
function renderCharts(results) {
  return {
    'chart-memory.svg': memoryChart(results),
    'chart-fanout.svg': fanoutChart(results),
    'chart-latency.svg': latencyChart(results),
  };
}

function writeCharts(results, dir = DOCS) {
  const charts = renderCharts(results);
  for (const [name, svg] of Object.entries(charts)) writeFileSync(join(dir, name), svg);
  return Object.keys(charts);
}

module.exports = { renderCharts, writeCharts, median };

if (require.main === module) {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf('--out');
  const dir = outIndex === -1 ? DOCS : args[outIndex + 1];
  const file = args.find((a, i) => !a.startsWith('--') && (outIndex === -1 || i !== outIndex + 1)) ?? join(DOCS, 'bench-results.json');
  const names = writeCharts(JSON.parse(readFileSync(file, 'utf8')), dir);
  console.error(`charts: wrote ${names.map((n) => join(dir, n)).join(', ')}`);
}
