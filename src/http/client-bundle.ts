import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The SDK for browsers, without a bundler: the compiled CommonJS modules of `realtime-gateway/client`, each
 * wrapped in a function, plus a twenty-line `require` for their relative imports. Exposes
 * `window.RealtimeGateway`. Served to the pages of the internal port: `/demo/client.js` and `/admin/client.js`.
 */
function buildClientBundle(): string {
  const dir = dirname(require.resolve('realtime-gateway/client'));
  const modules = readdirSync(dir)
    .filter((file) => file.endsWith('.js'))
    .map((file) => {
      const source = readFileSync(join(dir, file), 'utf8').replace(/\/\/# sourceMappingURL=.*$/m, '');
      return `${JSON.stringify(`./${file.slice(0, -3)}`)}: function (module, exports, require) {\n${source}\n}`;
    });
  return `(function () {
  var defs = {${modules.join(',\n')}};
  var cache = {};
  function load(name) {
    if (cache[name]) return cache[name].exports;
    if (!defs[name]) throw new Error('realtime-gateway client bundle: no module ' + name);
    var module = (cache[name] = { exports: {} });
    defs[name](module, module.exports, load);
    return module.exports;
  }
  window.RealtimeGateway = load('./index');
})();\n`;
}

let bundle: string | undefined;

/** The bundle, built once per process on first use and shared by both pages. */
export function clientBundle(): string {
  bundle ??= buildClientBundle();
  return bundle;
}
