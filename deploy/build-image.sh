#!/usr/bin/env bash
# Builds the fleetprof image without a Docker engine: buildah (vfs storage,
# chroot isolation, so it works as root on a plain host or inside a VM or CI
# container) on a Debian base root file system made by debootstrap.
#
#   deploy/build-image.sh [TAG]            default TAG: localhost/fleetprof:dev
#   FLEETPROF_IMAGE_CACHE=/var/cache/...   where the debootstrap tarball is kept
#   FLEETPROF_IMAGE_ARCHIVE=out.tar        also write the image as an OCI archive
#
# Measured on a shared, loaded 2-core machine: ~10 min with the base image
# already imported (build-stage packages, npm ci with its sqlite3 compile, the
# build, the runtime stage), 2-3 min more the first time for debootstrap;
# later builds reuse the base image and buildah's layer cache.
# test/deploy-image.test.ts (part of npm test) runs this and test-image.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost/fleetprof:dev}
suite=trixie # Node 20 in Debian's own archive; see deploy/Containerfile
cache=${FLEETPROF_IMAGE_CACHE:-/var/cache/fleetprof-image}
base=localhost/fleetprof-base:$suite
buildah=(buildah --storage-driver vfs)

need() { command -v "$1" >/dev/null || { echo "build-image: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need buildah buildah
need debootstrap debootstrap
[ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (debootstrap and buildah's vfs storage need it)" >&2; exit 1; }

# 1. The base: a minimal Debian root file system, imported once as an image.
if ! "${buildah[@]}" images --quiet "$base" >/dev/null 2>&1; then
  mkdir -p "$cache"
  tarball=$cache/rootfs-$suite.tar
  if [ ! -f "$tarball" ]; then
    rm -rf "$cache/rootfs-$suite.tmp"
    echo "build-image: debootstrap $suite (minbase)" >&2
    # No mirror argument: debootstrap's default Debian mirror.
    debootstrap --variant=minbase "$suite" "$cache/rootfs-$suite.tmp" >&2
    tar -C "$cache/rootfs-$suite.tmp" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$cache/rootfs-$suite.tmp"
  fi
  echo "build-image: importing the base as $base" >&2
  ctr=$("${buildah[@]}" from scratch)
  mnt=$("${buildah[@]}" mount "$ctr")
  tar -C "$mnt" --numeric-owner -xf "$tarball"
  "${buildah[@]}" umount "$ctr" >/dev/null
  "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  "${buildah[@]}" commit --quiet "$ctr" "$base" >/dev/null
  "${buildah[@]}" rm "$ctr" >/dev/null
fi

# 2. The build context: the files git knows (tracked and new, not ignored), so
#    node_modules, dist and local data never enter the image.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf -) | tar -C "$context" -xf -
# BTF for vmlinux.h: the build's chroot may not see /sys; give it this host's.
if [ -r /sys/kernel/btf/vmlinux ]; then
  mkdir -p "$context/bpf/build"
  bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$context/bpf/build/vmlinux.h"
fi

# The host's CA bundle, for npm ci behind a TLS-intercepting proxy: mounted
# into the build's RUN steps, never copied into a layer.
volumes=()
ca_bundle=${FLEETPROF_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$ca_bundle" ]; then
  mkdir -p "$context.ca" && cp "$ca_bundle" "$context.ca/ca-certificates.crt"
  trap 'rm -rf "$context" "$context.ca"' EXIT
  volumes=(--volume "$context.ca:/run/build-ca:ro")
fi

echo "build-image: building $tag" >&2
"${buildah[@]}" bud --isolation chroot --layers "${volumes[@]}" --build-arg "BASE=$base" -f "$context/deploy/Containerfile" -t "$tag" "$context" >&2
if [ -n "${FLEETPROF_IMAGE_ARCHIVE:-}" ]; then
  "${buildah[@]}" push "$tag" "oci-archive:$FLEETPROF_IMAGE_ARCHIVE:$tag" >&2
fi
echo "$tag"
