#!/usr/bin/env bash
# Build the CPU Triton image of the kind profile (k8s/images/triton-cpu/Dockerfile).
#   k8s/images/triton-cpu.sh --tag IMAGE [--base IMAGE | --debootstrap]
#   --tag IMAGE     image name (k8s/bootstrap.sh --profile kind: the kind profile's triton.image)
#   --base IMAGE    base image (default debian:bookworm-slim, pulled from Docker Hub)
#   --debootstrap   no registry: build the base from Debian's mirrors with debootstrap (root) and
#                   `docker import` it as serverless-ai/debian:bookworm-minbase, kept in Docker and
#                   as a tarball in $SAI_CACHE_DIR (default ~/.cache/serverless-ai) for later runs
# The pinned wheels (triton-cpu/requirements.txt) are downloaded here, on the host, into
# $SAI_CACHE_DIR/wheels, so nothing inside the build talks to PyPI.
set -euo pipefail
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE_DIR="${SAI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/serverless-ai}"
MINBASE="serverless-ai/debian:bookworm-minbase"
BASE="debian:bookworm-slim"
TAG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --base) BASE="${2:?--base needs a value}"; shift 2 ;;
    --debootstrap) BASE="$MINBASE"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$TAG" ] || { echo "--tag is required" >&2; usage >&2; exit 2; }

debootstrap_base() {
  # An image that exists is kept; else the cached tarball is imported; else debootstrap (~35 s).
  docker image inspect "$MINBASE" >/dev/null 2>&1 && return
  local tarball="$CACHE_DIR/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { echo "debootstrap needs root (or a cached $tarball)" >&2; exit 1; }
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    local root; root="$(mktemp -d)"
    echo "base image: debootstrap --variant=minbase bookworm"
    debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 ||
      { tail -20 "$root.log" >&2; rm -rf "$root" "$root.log"; exit 1; }
    rm -rf "$root.log" "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$CACHE_DIR"
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  echo "base image: docker import $tarball $MINBASE"
  docker import "$tarball" "$MINBASE" >/dev/null
}
[ "$BASE" = "$MINBASE" ] && debootstrap_base

# The build context: the Dockerfile, our backend and the wheels; nothing else of the repository.
# Fixed modes (a caller's umask 077, e.g. `sai`'s, would otherwise change them and the layer cache).
umask 022
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$CACHE_DIR/wheels" "$context/wheels"
"${PYTHON:-python3}" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --implementation cp --python-version 3.11 --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$CACHE_DIR/wheels" -r "$HERE/triton-cpu/requirements.txt"
while read -r pin; do  # only the pinned files (the cache may hold older ones)
  name="${pin%%==*}"; version="${pin#*==}"
  cp "$CACHE_DIR"/wheels/"${name//-/_}-$version"-*.whl "$context/wheels/"
done < <(grep -v '^#' "$HERE/triton-cpu/requirements.txt" | grep .)
cp "$HERE/triton-cpu/Dockerfile" "$context/"
cp -r "$REPO/sai/local/triton_backends/onnx_local" "$context/onnx_local"
rm -rf "$context/onnx_local/__pycache__"
echo "building $TAG on $BASE"
# The classic builder: Debian's docker.io has no buildx, and nothing here needs BuildKit.
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE" -t "$TAG" "$context" >/dev/null
docker image inspect -f "$TAG: {{.Size}} bytes" "$TAG"
