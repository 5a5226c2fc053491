// Content ids are stored (symbol rows, stacks.hash, series ids): a change to
// the hash function would give stored code new ids and duplicate its rows.
// The pinned values were computed by the implementation that wrote the
// existing stores (before the ingest fast paths, commit af8249b); the fast
// paths (numsAt, bytes with lanes in locals) must agree with the plain
// per-value feed.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Hasher, SEED, textId } from '../src/profile/identity.js';

describe('content ids', () => {
  it('are the ids existing stores hold', () => {
    const h = new Hasher();
    expect(textId(SEED.series, '{"node":"a","service":"b"}')).toBe(3630361830590126);
    h.reset(SEED.stack).int(3).num(123456789012345).num(1).num(2 ** 52 + 7);
    expect([h.id(), h.check()]).toEqual([7860991671721481, 851661890]);
    const b = Buffer.from('github.com/acme/svc1/pkg2.(*Type3).Method4ü');
    h.reset(SEED.string).bytes(b, 0, b.length);
    expect([h.id(), h.check()]).toEqual([4780654721077700, 1143678401]);
    h.reset(SEED.string).bytes(b, 3, 10);
    expect([h.id(), h.check()]).toEqual([1485880622791259, -381115892]);
  });

  it('numsAt and bytes equal feeding one value at a time', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 53 - 1 }), { maxLength: 80 }), fc.uint8Array({ maxLength: 70 }), (ids, bytes) => {
        const values = Float64Array.from(ids);
        const index = Int32Array.from(ids.map((_, i) => ids.length - 1 - i)); // reversed: exercises the indirection
        const fast = new Hasher().reset(SEED.stack).numsAt(values, index, 0, ids.length);
        const slow = new Hasher().reset(SEED.stack);
        for (let j = 0; j < ids.length; j++) slow.num(values[index[j]!]!);
        expect([fast.id(), fast.check()]).toEqual([slow.id(), slow.check()]);
        const fb = new Hasher().reset(SEED.string).bytes(bytes, 0, bytes.length);
        const sb = new Hasher().reset(SEED.string).int(bytes.length);
        let k = 0;
        for (; k + 4 <= bytes.length; k += 4) sb.int(bytes[k]! | (bytes[k + 1]! << 8) | (bytes[k + 2]! << 16) | (bytes[k + 3]! << 24));
        let tail = 0;
        for (let sh = 0; k < bytes.length; k++, sh += 8) tail |= bytes[k]! << sh;
        sb.int(tail);
        expect([fb.id(), fb.check()]).toEqual([sb.id(), sb.check()]);
      }),
      { numRuns: 300 },
    );
  });
});
