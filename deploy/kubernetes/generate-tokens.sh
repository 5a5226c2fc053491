#!/usr/bin/env bash
# Writes tokens.env beside this script: random ingest and query tokens for
# the kustomization's secretGenerator. Refuses to overwrite (rotating tokens
# is a decision: delete the file first).
set -euo pipefail
out="$(dirname "$0")/tokens.env"
if [ -e "$out" ]; then
  echo "generate-tokens: $out exists; delete it to rotate the tokens" >&2
  exit 1
fi
umask 077
{
  echo "ingest=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "query=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
} > "$out"
echo "generate-tokens: wrote $out (ingest and query tokens)" >&2
