#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu checkout ready to run: installs the system
# packages fleetprof builds and tests with (when missing), the npm
# dependencies, and builds the BPF object, the native addon, TypeScript and
# the web viewer. Safe to run again: each step is skipped when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

# package:command-or-file-that-proves-it-is-installed
SYSTEM_PACKAGES=(
  "clang:/usr/bin/clang"
  "llvm:/usr/bin/llvm-strip"
  "make:/usr/bin/make"
  "g++:/usr/bin/g++"
  "gcc:/usr/bin/gcc"
  "xz-utils:/usr/bin/xz"
  "python3:/usr/bin/python3"
  "pkg-config:/usr/bin/pkg-config"
  "libbpf-dev:/usr/include/bpf/libbpf.h"
  "libelf-dev:/usr/include/libelf.h"
  "zlib1g-dev:/usr/include/zlib.h"
  "bpftool:/usr/sbin/bpftool"
  "binutils:/usr/bin/readelf"
  "golang-go:/usr/bin/go"
  "chromium:/usr/bin/chromium"
  "postgresql:/usr/lib/postgresql/15/bin/initdb"
  "strace:/usr/bin/strace"
  # The image test (test/deploy-image.test.ts) builds the container image
  # without a Docker engine: buildah on a debootstrap Debian base.
  "buildah:/usr/bin/buildah"
  "debootstrap:/usr/sbin/debootstrap"
)

missing=()
for entry in "${SYSTEM_PACKAGES[@]}"; do
  package="${entry%%:*}"
  proof="${entry#*:}"
  [ -e "$proof" ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# npm dependencies: reinstall when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

make -s -C bpf >&2

addon=native/build/Release/fleetprof_native.node
if [ ! -f "$addon" ] || [ native/src/addon.cc -nt "$addon" ] || [ native/binding.gyp -nt "$addon" ]; then
  echo "setup: building the native addon" >&2
  npx --no-install node-gyp rebuild --directory native >/dev/null
fi

npx --no-install tsc -p tsconfig.json
if [ -f web/vite.config.ts ]; then
  npx --no-install vite build web --logLevel warn >&2
fi
