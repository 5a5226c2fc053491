// Checks on a decoded profile's own claims, made before anything is interned.
import { errBadTime } from './errors.js';

export interface ProfileTimeLimits {
  /** How far past the server's clock a profile may be dated (agent clock skew). */
  maxFutureSkewMs: number;
  /** Profiles older than this are refused: retention would delete them at once. */
  retentionMs: number;
}

export const DEFAULT_MAX_FUTURE_SKEW_MS = 5 * 60_000;

/**
 * Refuses a profile dated beyond the allowed skew into the future (it would
 * escape retention and move its series' last-seen time forward) or older
 * than retention. `timeNanos` 0 means "unset": the profile takes the arrival time.
 */
export function checkProfileTime(timeNanos: bigint, nowMs: number, limits: ProfileTimeLimits | undefined): void {
  if (limits === undefined || timeNanos <= 0n) return;
  const timeMs = Number(timeNanos / 1_000_000n);
  const iso = (ms: number) => (Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`);
  if (timeMs > nowMs + limits.maxFutureSkewMs) {
    throw errBadTime(
      `profile time ${iso(timeMs)} is ${Math.round((timeMs - nowMs) / 1000)} s ahead of the server's clock (${iso(nowMs)}); the allowed skew is ${limits.maxFutureSkewMs / 1000} s`,
    );
  }
  if (timeMs < nowMs - limits.retentionMs) {
    throw errBadTime(`profile time ${iso(timeMs)} is older than the retention of ${limits.retentionMs / 1000} s; it would be deleted at once`);
  }
}
