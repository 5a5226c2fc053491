// The samples blob as servers before coding 2 wrote it (coding 1 in
// server/store/sample-codec.ts): per stack varint(stackId - previousStackId),
// then per stored column (scale > 0) a zigzag varint(value / scale). Written
// here from that description, not with the server's encoder, so tests can
// build the rows an older server left in a store and check they still read.
// The scales were chosen then as now (encodeSamples returns them).

/** A coding-1 blob of ascending stackIds with values[i * nTypes + t] under `scales`. */
export function legacyEncode(stackIds: readonly number[], values: readonly number[], scales: readonly number[]): Buffer {
  const out: number[] = [];
  const varint = (v: number) => {
    for (; v >= 128; v = Math.floor(v / 128)) out.push((v % 128) | 128);
    out.push(v);
  };
  const nTypes = scales.length;
  let prev = 0;
  stackIds.forEach((id, i) => {
    varint(id - prev);
    prev = id;
    for (let t = 0; t < nTypes; t++) {
      if (scales[t]! < 0) continue;
      const v = values[i * nTypes + t]! / scales[t]!;
      varint(v >= 0 ? 2 * v : -2 * v - 1);
    }
  });
  return Buffer.from(out);
}
