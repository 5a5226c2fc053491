#!/usr/bin/env bash
# The peers the benchmarks compare against, and GNU time to measure them.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/bin/time ] || need+=(time)
[ -x /usr/bin/perf ] || need+=(linux-perf)
[ -x /usr/sbin/profile-bpfcc ] || need+=(bpfcc-tools)
ls /usr/src/linux-headers-*-amd64 >/dev/null 2>&1 || need+=(linux-headers-amd64)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
