#!/usr/bin/env bash
# The load balancer image kind v0.30.0 puts in front of several control planes (HA configs),
# built offline: Debian bookworm's haproxy and the libraries it loads, busybox for the
# commands kind runs in it (mkdir, cp, kill), and a starter config. It is tagged with the
# name kind looks for (loadbalancer.Image in kind's source), so kind finds it locally and
# pulls nothing; the io.loadtest.built label says it is this local build.
# Cached: rebuilt only when this script or the Debian package versions change.
set -euo pipefail

TAG="docker.io/kindest/haproxy:v20230606-42a2262b"   # kind v0.30.0's loadbalancer.Image
PACKAGES=(haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1)
say() { echo "haproxy-image: $*" >&2; }

versions=$(apt-cache policy "${PACKAGES[@]}" 2>/dev/null | awk '/^[a-z]/{p=$1} /Candidate:/{print p $2}' | tr '\n' ' ')
[ -n "$versions" ] || { apt-get update -qq; versions=$(apt-cache policy "${PACKAGES[@]}" | awk '/^[a-z]/{p=$1} /Candidate:/{print p $2}' | tr '\n' ' '); }
hash=$( { cat "$0"; echo "$versions"; sha256sum /bin/busybox; } | sha256sum | cut -c1-12)
if [ "$(docker image inspect -f '{{index .Config.Labels "io.loadtest.inputs"}}' "$TAG" 2>/dev/null)" = "$hash" ]; then
    say "up to date: $TAG"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "building $TAG from Debian's ${PACKAGES[*]}"
(cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1)
root="$work/root"
for d in "$work"/*.deb; do dpkg -x "$d" "$root"; done
rm -rf "$root/usr/share" "$root/etc/init.d" "$root/lib/systemd" "$root/etc/logrotate.d"
# the host's (bookworm) copies of every other library haproxy loads
for lib in $(LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$root/usr/sbin/haproxy" \
        | awk '/=> \// {print $3} $1 ~ /^\/lib64\// {print $1}'); do
    case "$lib" in "$root"/*) continue ;; esac
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
mkdir -p "$root/bin" "$root/usr/local/etc/haproxy" "$root/tmp" "$root/run/haproxy"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for a in sh mkdir cp kill cat ls; do ln -sf busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nhaproxy:x:99:99::/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nhaproxy:x:99:\n' > "$root/etc/group"
# a starter config: kind replaces it and sends SIGHUP once the control planes exist
cat > "$root/usr/local/etc/haproxy/haproxy.cfg" <<'CFG'
global
  log stdout format raw local0
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend control-plane
  bind *:6443
  default_backend kube-apiservers
backend kube-apiservers
CFG
# kind's config asks for maxconn 100000, i.e. ~200k file descriptors; where the container's
# nofile limit is lower, haproxy >= 2.3 refuses to load it (strict-limits). A second config
# file, read after kind's on every reload, lets it run with what the limit allows.
printf 'global\n  no strict-limits\n' > "$root/usr/local/etc/haproxy/zz-loadtest.cfg"
old_id=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
tar -C "$root" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/sbin:/usr/bin:/bin' \
    -c "LABEL io.loadtest.built=local io.loadtest.inputs=$hash" \
    -c 'ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg", "-f", "/usr/local/etc/haproxy/zz-loadtest.cfg"]' \
    - "$TAG" >/dev/null
# re-importing under the same tag leaves the old image dangling: remove it by ID
[ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ] \
    && docker rmi "$old_id" >/dev/null 2>&1 || true
say "built $TAG"
