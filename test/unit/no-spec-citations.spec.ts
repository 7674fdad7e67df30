import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(__dirname, '..', '..');

function files(dir: string, ext: RegExp): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? files(join(dir, entry.name), ext) : ext.test(entry.name) ? [join(dir, entry.name)] : [],
  );
}

// Users read docs/protocol.md (and the other docs) as the contract; "the SPEC" is a document they do not have.
describe('docs and sources cite the docs, not "the SPEC"', () => {
  it('README.md, docs/*.md, src/, the SDK package and the chart never name it', () => {
    const checked = [
      join(ROOT, 'README.md'),
      ...files(join(ROOT, 'docs'), /\.md$/),
      ...files(join(ROOT, 'src'), /\.ts$/),
      ...['README.md', 'CHANGELOG.md', 'build.mjs', 'package.json'].map((file) => join(ROOT, 'packages', 'client', file)),
      ...files(join(ROOT, 'helm'), /\.(md|ya?ml|json|tpl|txt)$/),
    ];
    const citing = checked.flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .map((line, i) => (/\bSPEC\b/.test(line) ? `${relative(ROOT, file)}:${i + 1}: ${line.trim()}` : ''))
        .filter(Boolean),
    );
    expect(citing).toEqual([]);
  });
});
