#!/usr/bin/env bash
# The Locust worker image (`loadtest worker` in a pod, clusters/locust/workers.yaml), built
# with no registry, as the node image is (clusters/node-image/build.sh):
#   1. a debootstrapped Debian bookworm, minbase + python3 + CA certificates (cached tarball)
#   2. the project's wheel and its dependencies' wheels (pip, from PyPI or pip's cache),
#      installed with --target into /opt/loadtest/site (same Python 3.11 ABI as Debian's)
#   3. the locustfiles beside them, `docker import` with PATH, PYTHONPATH, the entrypoint
#      and user nobody (the worker needs no root and no writable root filesystem but /tmp)
# Cached: the tag carries a hash of every input; a second run with the same inputs only checks.
#
# Usage: build.sh [--force]    Prints the image reference on stdout when done.
# Then: kind load docker-image REF --name CLUSTER (loadtest does it for --workers-in-cluster).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
CACHE="${LOADTEST_CACHE:-$HOME/.cache/loadtest}"
OUT="$CACHE/locust-image"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_REPO="${WORKER_IMAGE_REPO:-loadtest/locust-worker}"
PACKAGES="python3,ca-certificates"
PY="${PYTHON:-$repo/.venv/bin/python}"
t_start=$(date +%s)
say() { echo "worker-image: $*" >&2; }
die() { say "error: $*"; exit 1; }
force=0; [ "${1:-}" = --force ] && force=1

command -v debootstrap >/dev/null || {
    say "installing debootstrap (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends debootstrap >&2
}
[ -x "$PY" ] || die "no Python at $PY (run: make venv)"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PY is not Python 3.11 (Debian bookworm's): its wheels would not fit the image"

inputs_hash=$( {
    echo "$SUITE $MIRROR $PACKAGES"; cat "$0" "$repo/pyproject.toml"
    (cd "$repo" && find loadtest locustfiles -name '*.py' -type f | sort | xargs sha256sum)
} | sha256sum | cut -c1-12)
IMAGE="$IMAGE_REPO:$inputs_hash"
if [ "$force" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "up to date: $IMAGE"
    echo "$IMAGE"
    exit 0
fi
say "building $IMAGE"
mkdir -p "$OUT"
work=$(mktemp -d "$OUT/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

base_tar="$OUT/base-$SUITE-$(echo "$SUITE $MIRROR $PACKAGES" | sha256sum | cut -c1-12).tar"
if [ ! -f "$base_tar" ]; then
    say "[1/3] debootstrap $SUITE minbase + $PACKAGES (a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/base" "$MIRROR" \
        > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$work/base"/var/lib/apt/lists/* "$work/base"/var/cache/apt/* "$work/base"/var/log/* \
        "$work/base"/usr/share/doc/* "$work/base"/usr/share/man/* "$work/base"/tmp/*
    tar -C "$work/base" --numeric-owner -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$work/base"
else
    say "[1/3] base: cached $(basename "$base_tar")"
fi

say "[2/3] wheels: the project and its dependencies"
root="$work/root"
mkdir -p "$root"
tar -C "$root" -xf "$base_tar"
"$PY" -m pip wheel -q --wheel-dir "$work/wheels" "$repo" >&2
"$PY" -m pip install -q --no-index --find-links "$work/wheels" --no-compile \
    --target "$root/opt/loadtest/site" loadtest >&2
cp -r "$repo/locustfiles" "$root/opt/loadtest/locustfiles"
chmod 1777 "$root/tmp"

say "[3/3] docker import"
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV PYTHONPATH=/opt/loadtest/site' \
    --change 'ENV LOADTEST_LOCUSTFILES=/opt/loadtest/locustfiles' \
    --change 'ENV HOME=/tmp' \
    --change 'USER 65534:65534' \
    --change 'ENTRYPOINT ["python3", "-m", "loadtest.cli", "worker"]' \
    - "$IMAGE" >/dev/null
# older builds of this repository are dead weight (each a few hundred MB)
docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE_REPO" | grep -vx "$IMAGE" \
    | xargs -r docker rmi >/dev/null 2>&1 || true
say "built $IMAGE in $(( $(date +%s) - t_start ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
echo "$IMAGE"
