import { describe, expect, it } from 'vitest';
import { findExecutableMapping, findMapping, isFileBacked, parseProcMaps } from '../src/symbolize/proc-maps.js';
import { readFileSync } from 'node:fs';

const SAMPLE = `55d0c8a00000-55d0c8a01000 r--p 00000000 fd:01 1234567                    /usr/bin/my app
55d0c8a01000-55d0c8a02000 r-xp 00001000 fd:01 1234567                    /usr/bin/my app
7f1e2a000000-7f1e2a028000 r--p 00000000 08:02 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a028000-7f1e2a1bd000 r-xp 00028000 08:02 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2b000000-7f1e2b001000 r-xp 00000000 08:02 4242                       /opt/old/libgone.so (deleted)
7f1e2c000000-7f1e2c100000 rwxp 00000000 00:00 0 
7f1e2d000000-7f1e2d001000 r-xp 00000000 00:00 0                          [anon:v8 code]
7ffc1b7fe000-7ffc1b800000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`;

describe('parseProcMaps', () => {
  it('parses every field, keeps spaces in paths, and flags deleted files', () => {
    const { mappings, malformedLines } = parseProcMaps(SAMPLE);
    expect(malformedLines).toBe(0);
    expect(mappings).toHaveLength(9);
    expect(mappings[1]).toEqual({
      startAddress: 0x55d0c8a01000n,
      endAddress: 0x55d0c8a02000n,
      perms: 'r-xp',
      fileOffset: 0x1000n,
      dev: 'fd:01',
      inode: 1234567n,
      path: '/usr/bin/my app',
      isDeleted: false,
    });
    expect(mappings[4]).toMatchObject({ path: '/opt/old/libgone.so', isDeleted: true });
    expect(mappings[5]).toMatchObject({ path: '', inode: 0n, perms: 'rwxp' });
    expect(mappings[6]?.path).toBe('[anon:v8 code]');
    expect(mappings[8]?.startAddress).toBe(0xffffffffff600000n);
    expect(mappings.map(isFileBacked)).toEqual([true, true, true, true, true, false, false, false, false]);
  });

  it('counts garbage lines instead of failing', () => {
    const text = 'garbage\n\n12-zz r-xp 0 0:0 0\n1000-2000 r-xp 00000000 fd:01 5 /bin/x\n3000-2000 r-xp 0 fd:01 5 /bin/backwards\n\u0000\u0001binary\n';
    const { mappings, malformedLines } = parseProcMaps(text);
    expect(mappings).toHaveLength(1);
    expect(malformedLines).toBe(4);
  });

  it('finds the mapping holding an address, and only executable ones on request', () => {
    const { mappings } = parseProcMaps(SAMPLE);
    expect(findMapping(mappings, 0x7f1e2a028123n)?.fileOffset).toBe(0x28000n);
    expect(findMapping(mappings, 0x7f1e2a1bd000n)).toBeUndefined(); // end is exclusive
    expect(findMapping(mappings, 0x55d0c8a00010n)?.perms).toBe('r--p');
    expect(findExecutableMapping(mappings, 0x55d0c8a00010n)).toBeUndefined();
    expect(findExecutableMapping(mappings, 0x55d0c8a01010n)?.path).toBe('/usr/bin/my app');
    expect(findMapping(mappings, 1n)).toBeUndefined();
  });

  it('parses this process\'s own maps', () => {
    const { mappings, malformedLines } = parseProcMaps(readFileSync('/proc/self/maps', 'utf8'));
    expect(malformedLines).toBe(0);
    expect(mappings.some((m) => m.path === process.execPath || m.path.endsWith('/node'))).toBe(true);
  });
});
