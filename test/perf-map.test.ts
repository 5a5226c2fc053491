import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePerfMap, PerfMapFile, PerfMapTable, splitV8Name } from '../src/symbolize/perf-map.js';

describe('V8 perf map names', () => {
  it.each([
    ['JS:*hotLoop /tmp/pm/x.js:1:17', 'hotLoop', '/tmp/pm/x.js:1:17'],
    ['JS:~get foo /tmp/pm/x.js:2:17', 'get foo', '/tmp/pm/x.js:2:17'],
    ['JS:^ /tmp/pm/x.js:1:1', '(anonymous)', '/tmp/pm/x.js:1:1'],
    ['JS:+maglevd /app/with space/x.js:9', 'maglevd', '/app/with space/x.js:9'],
    ['LazyCompile:*hotLoop /path/x.js:3', 'hotLoop', '/path/x.js:3'],
    ['LazyCompile:~Module._compile node:internal/modules/cjs/loader:1241', 'Module._compile', 'node:internal/modules/cjs/loader:1241'],
    ['Function:^foo file:///srv/a.mjs:4', 'foo', 'file:///srv/a.mjs:4'],
    ['Eval:~ /tmp/pm/x.js:1:1', '(anonymous)', '/tmp/pm/x.js:1:1'],
    ['Builtin:ArrayPrototypePush', 'Builtin:ArrayPrototypePush', null],
    ['BytecodeHandler:Ldar', 'BytecodeHandler:Ldar', null],
    ['my_jit_func', 'my_jit_func', null],
    ['java.lang.String::hashCode with spaces', 'java.lang.String::hashCode with spaces', null],
  ])('%s', (raw, name, sourceFile) => {
    expect(splitV8Name(raw)).toEqual({ name, sourceFile });
  });
});

describe('perf map parsing', () => {
  it('parses hex START SIZE and names to the end of the line, counting bad lines', () => {
    const { entries, malformedLines } = parsePerfMap('3a3d7e2c1a0 1c LazyCompile:*hotLoop /path/x.js:3\nnot a line\n10 zz bad\n1000 10 a name with spaces \n');
    expect(malformedLines).toBe(2);
    expect(entries).toEqual([
      { start: 0x3a3d7e2c1a0n, sizeBytes: 0x1cn, name: 'hotLoop', sourceFile: '/path/x.js:3' },
      { start: 0x1000n, sizeBytes: 0x10n, name: 'a name with spaces', sourceFile: null },
    ]);
  });

  it('lets later entries win where ranges overlap, keeping offsets from each entry\'s own start', () => {
    const { entries } = parsePerfMap(['1000 100 old', '1080 40 newer', '2000 10 x', '2000 10 x_recompiled', '1000 10 newest_head'].join('\n'));
    const t = PerfMapTable.fromEntries(entries);
    expect(t.lookup(0x1005n)).toMatchObject({ name: 'newest_head', offset: 5n });
    expect(t.lookup(0x1010n)).toMatchObject({ name: 'old', offset: 0x10n });
    expect(t.lookup(0x1090n)).toMatchObject({ name: 'newer', offset: 0x10n });
    expect(t.lookup(0x10c0n)).toMatchObject({ name: 'old', offset: 0xc0n });
    expect(t.lookup(0x10ffn)?.name).toBe('old');
    expect(t.lookup(0x1100n)).toBeNull();
    expect(t.lookup(0x2004n)?.name).toBe('x_recompiled');
  });

  it('re-reads a growing file incrementally, including a line that was half written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-perfmap-'));
    const path = join(dir, 'perf-1.map');
    const f = new PerfMapFile(path);
    expect(f.refresh()).toBe(false); // not there yet
    const versions = [f.version];
    writeFileSync(path, '1000 10 JS:*first /a.js:1\n2000 1');
    expect(f.refresh()).toBe(true);
    versions.push(f.version);
    f.refresh(); // unchanged: same version
    expect(f.version).toBe(versions[1]);
    expect(f.lookup(0x1001n)?.name).toBe('first');
    expect(f.lookup(0x2001n)).toBeNull();
    appendFileSync(path, '0 JS:~second /a.js:2\n1000 10 JS:*first_again /a.js:1\n');
    f.refresh();
    versions.push(f.version);
    expect(f.lookup(0x2001n)).toMatchObject({ name: 'second', sourceFile: '/a.js:2' });
    expect(f.lookup(0x1001n)?.name).toBe('first_again');
    expect(f.entryCount).toBe(3);
    // Rewritten shorter (pid reuse): starts over.
    writeFileSync(path, '3000 10 other\n');
    f.refresh();
    expect(f.lookup(0x1001n)).toBeNull();
    expect(f.lookup(0x3001n)?.name).toBe('other');
    versions.push(f.version);
    // Every change of what lookups return gave a new version.
    expect(new Set(versions).size).toBe(versions.length);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers like one table over every line while the file keeps growing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-perfmap-'));
    const path = join(dir, 'perf-2.map');
    const f = new PerfMapFile(path);
    let text = '';
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    // Growth in small and large steps, with re-compilations overlapping older code.
    for (const lines of [400, 3, 1, 50, 7, 200, 2, 900, 5]) {
      let chunk = '';
      for (let i = 0; i < lines; i++) chunk += `${(0x10000 + random(4000) * 0x10).toString(16)} ${(0x8 + random(0x80)).toString(16)} JS:*f${text.length + i}\n`;
      text += chunk;
      appendFileSync(path, chunk);
      f.refresh();
      const oneTable = PerfMapTable.fromEntries(parsePerfMap(text).entries);
      for (let a = 0x10000n; a < 0x10000n + 4000n * 0x10n + 0x100n; a += 0x7n) {
        expect(f.lookup(a)?.name ?? null, `address ${a.toString(16)}`).toBe(oneTable.lookup(a)?.name ?? null);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves many overlapping entries to the last one written', () => {
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) lines.push(`${(0x100000 + (i % 5000) * 0x40).toString(16)} 80 JS:*f${i} /x.js:${i}`);
    const t = PerfMapTable.fromEntries(parsePerfMap(lines.join('\n')).entries);
    // The last line written for address 0x100000 is i = 95000.
    expect(t.lookup(0x100000n)?.name).toBe('f95000');
  });
});
