// Coded errors. Every 4xx/5xx body has the ApiErrorResponse shape of
// src/profile/api-types.ts; `code` is stable so clients (and tests) can branch
// on it, `message` names the problem for humans.
import { STATUS_CODES } from 'node:http';
import type { ApiErrorResponse } from '../src/profile/api-types.js';

export class FpError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    /** Machine-readable detail added to the answer's body (ApiErrorResponse). */
    readonly details?: Pick<ApiErrorResponse, 'missingStacks'>,
  ) {
    super(message);
    this.name = 'FpError';
  }
}

function coded(code: string, statusCode: number) {
  return (message: string) => new FpError(code, statusCode, message);
}

export const errBadSelector = coded('FP_ERR_BAD_SELECTOR', 400);
export const errBadTime = coded('FP_ERR_BAD_TIME_RANGE', 400);
export const errBadParam = coded('FP_ERR_BAD_PARAMETER', 400);
export const errBadLabel = coded('FP_ERR_BAD_LABEL', 400);
export const errBadGzip = coded('FP_ERR_BAD_GZIP', 400);
export const errTooLarge = coded('FP_ERR_DECOMPRESSED_TOO_LARGE', 413);
export const errBadProtobuf = coded('FP_ERR_BAD_PROTOBUF', 400);
export const errBadProfile = coded('FP_ERR_BAD_PROFILE', 400);
export const errEmptyBody = coded('FP_ERR_EMPTY_BODY', 400);
export const errUnauthorized = coded('FP_ERR_UNAUTHORIZED', 401);
export const errNotFound = coded('FP_ERR_NOT_FOUND', 404);
/** Two different contents hashed to one id (src/profile/identity.ts); the profile is refused, never merged into the wrong code. */
export const errIdCollision = coded('FP_ERR_ID_COLLISION', 500);
export const errUnsupportedMediaType = coded('FP_ERR_UNSUPPORTED_MEDIA_TYPE', 415);
/** A lean push referenced stacks the store does not hold (never stored, or collected): the sender re-sends them with their definitions. */
export function errUnknownStacks(missing: readonly number[]): FpError {
  const shown = missing.slice(0, 5).join(', ');
  return new FpError(
    'FP_ERR_UNKNOWN_STACKS',
    409,
    `${missing.length} referenced stack(s) are not stored (${shown}${missing.length > 5 ? ', ...' : ''}); send them again with their definitions`,
    { missingStacks: [...missing] },
  );
}

export function httpErrorName(statusCode: number): string {
  return STATUS_CODES[statusCode] ?? 'Error';
}
