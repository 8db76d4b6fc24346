/** This build's name and version, read once from package.json (shown by --version and in build_info). */
import { readFileSync } from 'node:fs';

export const packageVersion: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
