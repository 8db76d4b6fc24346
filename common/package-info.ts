/** This build's version, read once from package.json (shown by --version and in build_info). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest package.json above this module: one level more from dist/ than from the sources. */
function findPackageJson(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const packageVersion: string = (
  JSON.parse(readFileSync(findPackageJson(dirname(fileURLToPath(import.meta.url))), 'utf8')) as {
    version: string;
  }
).version;
