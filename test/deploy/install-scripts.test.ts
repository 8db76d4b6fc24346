/**
 * npm 11's install-script policy (`allowScripts` in package.json): the dependencies whose install scripts
 * the project needs are approved, the others denied, and no installed package has install scripts that the
 * policy leaves unreviewed. npm warns about those now; a later npm will skip them, and the native pieces
 * (bufferutil, msgpackr-extract) would then be dropped without a word.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const readJson = (path: string) => JSON.parse(readFileSync(join(root, path), 'utf8'));
const pkg = readJson('package.json');

describe('install scripts (allowScripts)', () => {
  it('approves the native pieces and webgpu, denies core-js and esbuild', () => {
    expect(pkg.allowScripts).toEqual({
      bufferutil: true,
      'msgpackr-extract': true,
      webgpu: true,
      'core-js': false,
      esbuild: false,
    });
    // The project's own install script (the oneDNN addon) is the root package's: npm always runs it.
    expect(pkg.scripts.install).toBe('node scripts/build-native.mjs');
  });

  it('names only installed packages that have install scripts (no stale entries)', () => {
    for (const name of Object.keys(pkg.allowScripts)) {
      const { scripts = {} } = readJson(`node_modules/${name}/package.json`);
      expect(scripts.preinstall ?? scripts.install ?? scripts.postinstall, name).toBeDefined();
    }
  });

  it('leaves no installed package with install scripts unreviewed (npm install-scripts ls)', (ctx) => {
    const ls = spawnSync('npm', ['install-scripts', 'ls', '--json'], { cwd: root, encoding: 'utf8' });
    // An npm before 11's install-script policy has no such command, and no policy to follow.
    if (ls.status !== 0 && /Unknown command/i.test(`${ls.stdout}${ls.stderr}`)) ctx.skip();
    expect(ls.status, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout).allowScripts).toEqual([]);
  });
});
