/**
 * The docs stay true to the tree and the CLI: every relative link in README.md, SECURITY.md and docs/**.md
 * resolves (to a file, and for `#anchor` to a heading there), and every `gradfleet …` command line in their
 * fenced shell blocks names a real subcommand and only flags that subcommand has (checked against the
 * commander program, not run).
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/main.js';
import { type CheckReport, checkCommands, checkLinks, commandProblem, docFiles } from './doc-check.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const program = buildProgram();

const emptyReport = (): CheckReport => ({ problems: [], links: 0, anchors: 0, commands: 0 });
const listed = (report: CheckReport) => report.problems.map((p) => `${p.where}: ${p.what}`).join('\n');

describe('the docs', () => {
  const files = docFiles(root);

  it('are README.md, SECURITY.md and the pages under docs/', () => {
    const names = files.map((f) => f.slice(root.length).replace(/\\/g, '/'));
    for (const page of [
      'README.md',
      'SECURITY.md',
      'docs/design.md',
      'docs/operations.md',
      'docs/backends.md',
    ]) {
      expect(names).toContain(page);
    }
    expect(names).toContain('docs/cli.md');
    expect(names.filter((n) => n.startsWith('docs/benchmarks/')).length).toBeGreaterThan(5);
  });

  it('link only to files and headings that exist', () => {
    const report = emptyReport();
    checkLinks(root, files, report);
    expect(listed(report)).toBe('');
    // Not vacuous: the docs link to each other, to deploy/ and to headings a lot.
    expect(report.links).toBeGreaterThan(50);
    expect(report.anchors).toBeGreaterThan(20);
  });

  it('show gradfleet command lines whose subcommands and flags exist', () => {
    const report = emptyReport();
    checkCommands(root, files, program, report);
    expect(listed(report)).toBe('');
    expect(report.commands).toBeGreaterThan(30);
  });
});

describe('the checker', () => {
  it('accepts real commands and refuses unknown subcommands, flags and arguments', () => {
    const ok = (line: string) => commandProblem(program, line.split(' '));
    expect(ok('train --model mnist-small --workers 2 --json')).toBeUndefined();
    expect(ok('bench compute --model mnist-cnn mnist-small --threads 1,2')).toBeUndefined();
    expect(ok('worker --no-reconnect --connect ws://A:7070')).toBeUndefined();
    expect(ok('coordinator --no-metrics --help')).toBeUndefined();
    expect(ok('trian --epochs 1')).toMatch(/no subcommand 'trian'/);
    expect(ok('bench scael')).toMatch(/no subcommand 'scael'/);
    expect(ok('worker --shards 2')).toMatch(/'gradfleet worker' has no option --shards/);
    expect(ok('train --epochs 1 extra')).toMatch(/takes no argument 'extra'/);
  });

  it('finds a broken link, a missing heading and a wrong flag in a page', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gf-docs-'));
    mkdirSync(join(dir, 'docs'));
    writeFileSync(
      join(dir, 'README.md'),
      '# Top\n\n[ok](docs/a.md#a-heading) [gone](docs/missing.md) [bad](#nowhere)\n',
    );
    writeFileSync(
      join(dir, 'SECURITY.md'),
      '# S\n\n```bash\nnpx gradfleet train --epochs 1 --no-such-flag\n```\n',
    );
    writeFileSync(join(dir, 'docs', 'a.md'), '## A heading\n\n```bash\n# a comment, not a heading\n```\n');
    const report = emptyReport();
    const files = docFiles(dir);
    checkLinks(dir, files, report);
    checkCommands(dir, files, program, report);
    expect(report.problems.map((p) => p.what)).toEqual([
      'link to a missing file: docs/missing.md',
      'no heading for #nowhere in README.md',
      "'gradfleet train' has no option --no-such-flag: npx gradfleet train --epochs 1 --no-such-flag",
    ]);
    expect(report).toMatchObject({ links: 3, anchors: 2, commands: 1 });
  });
});
