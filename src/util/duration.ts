const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses "500ms", "90s", "15m", "24h", "7d", "2w" (or a bare number of seconds) into milliseconds. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a duration (examples: 90s, 15m, 24h, 7d)`);
  return Number(match[1]) * UNIT_MS[match[2] ?? 's']!;
}
