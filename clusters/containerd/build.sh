#!/usr/bin/env bash
# Build containerd v2 (containerd, ctr, containerd-shim-runc-v2) from the Go module proxy
# into $LOADTEST_CACHE/bin, static. It cannot go through a wrapper module like the rest of
# clusters/toolchain.toml: containerd's go.mod has exclude directives, which only apply in
# the main module. So: take the module's own source from the module cache, and build inside
# a writable copy of it with -mod=mod (its zip carries vendor/modules.txt but no vendor/).
# Rebuilt only when the pin, this script or Go changes (stamp file).
set -euo pipefail

VERSION=v2.1.4   # as kind v0.30.0's base image
MODULE=github.com/containerd/containerd/v2
TAGS="no_aufs no_zfs no_btrfs no_devmapper"   # as kind's base image builds it
CACHE="${LOADTEST_CACHE:-$HOME/.cache/loadtest}"
BIN="$CACHE/bin"
BINARIES=(containerd ctr containerd-shim-runc-v2)
say() { echo "containerd: $*" >&2; }

stamp_value="$VERSION $(go env GOVERSION) $(sha256sum "$0" | cut -c1-16)"
stamp="$BIN/.containerd.stamp"
if [ "${1:-}" != --force ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ] \
        && for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || exit 1; done; then
    say "$VERSION up to date in $BIN"
    exit 0
fi

mkdir -p "$BIN"
work=$(mktemp -d "$CACHE/containerd-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
say "fetching $MODULE@$VERSION (module proxy)"
src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
say "building ${BINARIES[*]} (static, tags: $TAGS)"
t0=$(date +%s)
(cd "$work/src" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags "$TAGS" \
    -ldflags "-X $MODULE/version.Version=$VERSION -X $MODULE/version.Package=$MODULE" \
    -o "$work/out/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2)
for b in "${BINARIES[@]}"; do mv -f "$work/out/$b" "$BIN/$b"; done
echo "$stamp_value" >"$stamp"
say "built in $(( $(date +%s) - t0 ))s: $("$BIN/containerd" --version)"
