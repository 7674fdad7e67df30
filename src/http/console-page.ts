/**
 * What the two pages of the internal port (`/admin`, `/demo`) share: one look, and one icon. Both are static
 * pages without a build step, so this is CSS text and markup, inlined into each.
 */

/** The icon: a signal on the accent colour. Served as /favicon.svg and /favicon.ico (index.controller.ts). */
export const FAVICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#0b5cad"/>' +
  '<circle cx="16" cy="21" r="3" fill="#fff"/><path d="M9 15a10 10 0 0 1 14 0M5 11a15.5 15.5 0 0 1 22 0" fill="none" stroke="#fff" stroke-width="2.6" stroke-linecap="round"/></svg>';

/** In each page's <head>: browsers then ask for this, not for a /favicon.ico they would guess. */
export const FAVICON_LINK = '<link rel="icon" href="/favicon.svg" type="image/svg+xml">';

/**
 * The consoles' style. Cards in a grid that is one column on a phone; tables wrap their cells (a 35-character pod
 * name, a user id) rather than grow past their card, and below 40rem (640 px) `table.stack` shows each row as a
 * small block of "label value" lines (labels from the header, set by the page as `data-label`), since six
 * columns do not fit 390 px. Nothing on either page may be wider than the viewport: test/e2e/console-layout.e2e.ts
 * checks at 1280 and 390 px.
 */
export const CONSOLE_STYLE = `
  :root { --fg: #1d232a; --muted: #5b6670; --line: #d9dee3; --bg: #f6f7f9; --ok: #1a7f37; --bad: #b42318; --warn: #9a6700; --accent: #0b5cad; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: center; padding: .8rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.1rem; margin: 0 auto 0 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(22rem, 100%), 1fr)); gap: 1rem; padding: 1rem; }
  main > section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; min-width: 0; }
  main > section h2 { font-size: 1rem; margin: 0 0 .6rem; }
  @media (min-width: 48rem) { main > section.wide { grid-column: span 2; } }
  table { width: 100%; border-collapse: collapse; font-size: .92rem; }
  .scroll { overflow-x: auto; }
  th, td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; white-space: nowrap; }
  td { overflow-wrap: anywhere; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  code { overflow-wrap: anywhere; }
  input, textarea, select, button { font: inherit; max-width: 100%; }
  input, textarea, select { width: 100%; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
  label { display: block; margin: .4rem 0; color: var(--muted); font-size: .9rem; }
  button { white-space: nowrap; overflow-wrap: normal; padding: .35rem .8rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.quiet { background: #fff; color: var(--accent); }
  button.danger { background: var(--bad); border-color: var(--bad); }
  .stats { display: flex; flex-wrap: wrap; gap: 1.4rem; }
  .stat b { display: block; font-size: 1.5rem; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--muted); font-size: .85rem; }
  .result { font-size: .9rem; margin-top: .4rem; word-break: break-word; }
  .result[data-ok="false"] { color: var(--bad); }
  .row { display: flex; flex-wrap: wrap; gap: .4rem .6rem; align-items: center; }
  .hint { color: var(--muted); font-size: .85rem; margin: .4rem 0 0; }
  .empty { color: var(--muted); border: 1px dashed var(--line); border-radius: 6px; padding: .8rem 1rem; margin: .4rem 0 0; }
  ol.frames { list-style: none; margin: .6rem 0 0; padding: 0; max-height: 18rem; overflow: auto; border: 1px solid var(--line); border-radius: 6px; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
  ol.frames:empty { display: none; }
  ol.frames li { padding: .15rem .4rem; border-bottom: 1px solid var(--line); white-space: pre-wrap; word-break: break-all; }
  @media (max-width: 40rem) {
    main { padding: .6rem; gap: .6rem; } header { padding: .6rem; } th, td { padding: .3rem .2rem; font-size: .85rem; }
    table.stack thead { display: none; }
    table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; width: 100%; }
    table.stack tr { border-bottom: 1px solid var(--line); padding: .25rem 0; }
    table.stack td { display: flex; gap: .8rem; justify-content: space-between; border: none; padding: .1rem 0; text-align: right; }
    table.stack td::before { content: attr(data-label); color: var(--muted); font-weight: 600; text-align: left; flex: none; }
    table.stack td:empty { display: none; }
  }
`;
