/**
 * Workers load only the packaged MNIST, or files inside a --data-dir (links resolved), whatever the
 * coordinator names.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDataSpec } from '../../worker/data-policy.js';
import { tempDir } from '../helpers/gradfleet.js';

const dir = tempDir('gradfleet-data-policy-');
const allowed = join(dir, 'allowed');
const outside = join(dir, 'outside');
mkdirSync(allowed);
mkdirSync(outside);
writeFileSync(join(allowed, 'train.csv'), 'label\n');
writeFileSync(join(outside, 'secret.csv'), 'label\n');
symlinkSync(join(outside, 'secret.csv'), join(allowed, 'link.csv'));

describe('checkDataSpec', () => {
  it('accepts mnist:* always, and a file only inside a --data-dir', () => {
    expect(checkDataSpec('mnist:train', [])).toEqual({ ok: true });
    expect(checkDataSpec(join(allowed, 'train.csv'), [allowed])).toEqual({ ok: true });
    expect(checkDataSpec(join(allowed, 'train.csv'), [])).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/only mnist:\*.*--data-dir/),
    });
  });

  it('refuses paths that escape the folder by .., by a link, or that do not exist', () => {
    expect(checkDataSpec(join(allowed, '..', 'outside', 'secret.csv'), [allowed])).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not inside --data-dir/),
    });
    expect(checkDataSpec(join(allowed, 'link.csv'), [allowed]).ok).toBe(false);
    expect(checkDataSpec('/etc/passwd', [allowed]).ok).toBe(false);
    expect(checkDataSpec(join(allowed, 'missing.csv'), [allowed]).ok).toBe(false);
    expect(checkDataSpec(allowed, [allowed]).ok).toBe(false);
  });
});
