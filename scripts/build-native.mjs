#!/usr/bin/env node
// `npm ci`'s install step: builds the optional oneDNN addon with node-gyp (which ships with npm).
// It always exits 0: without a compiler or libdnnl-dev gradfleet still installs and runs on wasm,
// and the reason is printed here and kept in build/ for the backend-selection log.
// Set GRADFLEET_SKIP_NATIVE=1 to skip the build on purpose.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
// read by training/kernels/native/addon.ts
const NOTE = join(root, 'build', 'gradfleet-native-not-built.txt');

function giveUp(reason, output = '') {
  mkdirSync(dirname(NOTE), { recursive: true });
  writeFileSync(NOTE, `${reason}\n`);
  // The compiler's own error lines say more than node-gyp's closing stack of "gyp ERR!" lines.
  const lines = output.trim().split('\n');
  const errors = lines.filter((l) => /error|not found/i.test(l) && !l.startsWith('gyp ERR!'));
  const tail = (errors.length ? errors : lines).slice(-15).join('\n');
  process.stderr.write(
    `${tail ? `${tail}\n` : ''}gradfleet: native oneDNN addon not built: ${reason}. ` +
      'Training still works on the wasm backend; for the native one install build-essential and libdnnl-dev and run npm ci again.\n',
  );
  process.exit(0);
}

// Why a failed build failed, in words: the usual causes have a recognisable line in node-gyp's output.
function diagnose(output) {
  if (/dnnl\.hpp: No such file|cannot find -ldnnl/.test(output)) return 'libdnnl-dev is not installed';
  if (
    /(g\+\+|c\+\+|make|cc): (command )?not found|not found: make|No such file or directory.*(g\+\+|make)/.test(
      output,
    )
  )
    return 'no C++ toolchain (install build-essential)';
  if (/gyp ERR! .*(download|ENOTFOUND|EAI_AGAIN|ECONNREFUSED)/.test(output))
    return 'node-gyp could not fetch the Node.js headers';
  return "the build failed (npm ci printed the compiler's errors)";
}

if (process.env.GRADFLEET_SKIP_NATIVE === '1') giveUp('skipped (GRADFLEET_SKIP_NATIVE=1)');

// npm sets npm_config_node_gyp for lifecycle scripts; outside npm, use the copy inside Node's own npm.
const prefix = dirname(dirname(process.execPath));
const nodeGyp = [
  process.env.npm_config_node_gyp,
  join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));
if (!nodeGyp) giveUp('node-gyp not found (run this through npm)');

// Distribution builds of Node ship their headers; pointing node-gyp at them avoids a download.
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];

const build = spawnSync(process.execPath, [nodeGyp, 'rebuild', ...nodedir], {
  cwd: root,
  encoding: 'utf8',
  env: process.env,
});
const output = `${build.stdout ?? ''}${build.stderr ?? ''}`;
if (build.status !== 0) giveUp(diagnose(output), output);
process.stderr.write('gradfleet: native oneDNN addon built (build/Release/gradfleet_native.node)\n');
