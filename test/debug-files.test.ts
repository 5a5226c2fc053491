import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIdDebugPath, crc32, crc32OfFile, findDebugFile } from '../src/symbolize/debug-files.js';
import { ElfReader } from '../src/symbolize/elf.js';
import { buildSymbolizeFixtures, removeSymbolizeFixtures, type SymbolizeFixtures } from './helpers/symbolize-fixtures.js';

describe('crc32', () => {
  it('matches the standard check value and is incremental', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('6789'), crc32(Buffer.from('12345')))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });
});

describe('findDebugFile', () => {
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => removeSymbolizeFixtures(fx));

  function linkOf(path: string): { fileName: string; crc32: number } | null {
    const elf = ElfReader.open(path);
    try {
      return elf.debugLink();
    } finally {
      elf.close();
    }
  }

  it('computes the CRC objcopy stored in .gnu_debuglink', () => {
    expect(crc32OfFile(join(fx.dir, 'pie.debug'))).toBe(linkOf(fx.strippedDebuglink)!.crc32);
  });

  it('finds a debuglink target next to the binary, in .debug/ and under /usr/lib/debug/<dir>', () => {
    const link = linkOf(fx.strippedDebuglink);
    expect(findDebugFile({ roots: ['/'], binaryPath: fx.strippedDebuglink, buildId: null, debugLink: link })).toEqual({ path: join(fx.dir, 'pie.debug'), via: 'debuglink' });

    // Binary seen at /app/bin/pie inside a "container" root.
    const root = mkdtempSync(join(tmpdir(), 'fleetprof-dbgroot-'));
    for (const rel of ['app/bin/.debug', 'usr/lib/debug/app/bin']) {
      const r = join(root, rel);
      mkdirSync(r, { recursive: true });
      copyFileSync(join(fx.dir, 'pie.debug'), join(r, 'pie.debug'));
      const found = findDebugFile({ roots: [root], binaryPath: '/app/bin/pie', buildId: null, debugLink: link });
      expect(found?.path).toBe(join(root, rel, 'pie.debug'));
      // Only one candidate at a time: remove this copy's content so the next location is tested.
      writeFileSync(join(r, 'pie.debug'), 'stale');
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('rejects a debuglink target whose CRC does not match', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-dbgcrc-'));
    writeFileSync(join(dir, 'pie.debug'), 'not the right file');
    expect(findDebugFile({ roots: ['/'], binaryPath: join(dir, 'pie'), buildId: null, debugLink: linkOf(fx.strippedDebuglink) })).toBeNull();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds a debug file by build ID under <root>/usr/lib/debug/.build-id and checks its build ID', () => {
    const elf = ElfReader.open(fx.strippedBuildId);
    const id = elf.buildId()!;
    elf.close();
    const found = findDebugFile({ roots: ['/nonexistent-root', fx.buildIdRoot], binaryPath: '/x/pie-byid', buildId: id, debugLink: null });
    expect(found).toEqual({ path: join(fx.buildIdRoot, buildIdDebugPath(id)), via: 'build-id' });
    // A file at the build-id path with another build ID is not accepted.
    const root = mkdtempSync(join(tmpdir(), 'fleetprof-badid-'));
    const wrong = join(root, buildIdDebugPath(id));
    mkdirSync(dirname(wrong), { recursive: true });
    copyFileSync(join(fx.dir, 'pie.debug'), wrong);
    expect(findDebugFile({ roots: [root], binaryPath: '/x/pie-byid', buildId: id, debugLink: null })).toBeNull();
    rmSync(root, { recursive: true, force: true });
    expect(execFileSync('readelf', ['-n', found!.path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toContain(id);
  });
});
