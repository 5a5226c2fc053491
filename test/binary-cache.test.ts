import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryCache } from '../src/symbolize/binary-cache.js';
import { buildSymbolizeFixtures, removeSymbolizeFixtures, type SymbolizeFixtures } from './helpers/symbolize-fixtures.js';

describe('BinaryCache', () => {
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => removeSymbolizeFixtures(fx));
  const opts = (p: string): { binaryPath: string; debugRoots: string[] } => ({ binaryPath: p, debugRoots: ['/'] });

  it('parses a file once, and a copy with the same build ID not at all', () => {
    const c = new BinaryCache();
    const a = c.load(fx.pie, opts(fx.pie));
    const b = c.load(fx.pie, opts(fx.pie));
    expect(a.ok && b.ok && a.binary === b.binary).toBe(true);
    // A byte-identical copy (another inode, same build ID), as in another container image.
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-cache-'));
    const copy = join(dir, 'pie-copy');
    writeFileSync(copy, readFileSync(fx.pie));
    const d = c.load(copy, opts(copy));
    expect(d.ok && a.ok && d.binary === a.binary).toBe(true);
    expect(c.stats()).toMatchObject({ parsed: 1, misses: 1, hits: 2, entries: 1 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('is bounded: least recently used binaries are evicted', () => {
    const c = new BinaryCache({ maxEntries: 2 });
    c.load(fx.pie, opts(fx.pie));
    c.load(fx.lib, opts(fx.lib));
    c.load(fx.pie, opts(fx.pie)); // pie is now most recent
    c.load(fx.noPie, opts(fx.noPie)); // evicts lib
    expect(c.stats()).toMatchObject({ entries: 2, evictions: 1, parsed: 3 });
    c.load(fx.pie, opts(fx.pie));
    expect(c.stats().parsed).toBe(3);
    c.load(fx.lib, opts(fx.lib));
    expect(c.stats().parsed).toBe(4);
  });

  it('caches parse errors (content) but not I/O errors, and counts both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-cache-bad-'));
    const bad = join(dir, 'bad');
    writeFileSync(bad, 'not elf at all');
    const c = new BinaryCache();
    const r1 = c.load(bad, opts(bad));
    const r2 = c.load(bad, opts(bad));
    expect(!r1.ok && r1.error.code).toBe('ELF_BAD_MAGIC');
    expect(!r2.ok && r2.error.code).toBe('ELF_BAD_MAGIC');
    const missing = c.load(join(dir, 'missing'), opts('/missing'));
    expect(!missing.ok && missing.error.code).toBe('ELF_IO');
    expect(c.stats()).toMatchObject({ parseErrors: 1, unreadable: 1, hits: 1 });
    rmSync(dir, { recursive: true, force: true });
  });
});

