/** docs/cli.md is what `npm run docs:cli` writes from the commander program today. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/main.js';
import { cliDocsPath, renderCliDocs } from '../../scripts/cli-docs.js';

describe('docs/cli.md', () => {
  const expected = renderCliDocs(buildProgram());

  it('is current (run `npm run docs:cli` after changing a command or option)', () => {
    expect(readFileSync(cliDocsPath, 'utf8'), 'docs/cli.md is out of date: run npm run docs:cli').toBe(
      expected,
    );
  });

  it('has a section for every command and subcommand', () => {
    const sections = expected.match(/^## gradfleet.*$/gm) ?? [];
    expect(sections).toContain('## gradfleet train');
    expect(sections).toContain('## gradfleet bench scale');
    expect(sections.length).toBeGreaterThanOrEqual(16);
  });

  it('names no machine: defaults built from the host name and process id read HOST and PID', () => {
    expect(expected).toContain('"HOST-PID"');
    expect(expected).not.toContain(`"${hostname()}-`);
    expect(expected).not.toContain(`-${process.pid}"`);
  });
});
