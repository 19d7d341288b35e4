#!/usr/bin/env bash
# make node-image: a kind-compatible node image for kind v0.30.0, built with no registry.
#
# From: a debootstrapped Debian bookworm (the packages of kind v0.30.0's images/base/Dockerfile,
# less nfs-common and open-iscsi), kind's base files from the kind Go module, the toolchain's
# static binaries ($LOADTEST_CACHE/bin), runc from Debian, and component images made here by
# `docker import` of small trees, tagged as `kubeadm config images list` names them.
# Cached: the image tag carries a hash of every input; a second run with the same inputs only
# checks. The debootstrapped base is cached as a tarball under $LOADTEST_CACHE/node-image/.
#
# Usage: build.sh [--force]    Prints the image reference on stdout when done.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
CACHE="${LOADTEST_CACHE:-$HOME/.cache/loadtest}"
BIN="$CACHE/bin"
OUT="$CACHE/node-image"
KIND_VERSION=v0.30.0
KIND_BASE="${KIND_BASE:-$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_REPO="${NODE_IMAGE_REPO:-loadtest/kind-node}"
# kind v0.30.0's base image packages (images/base/Dockerfile), less nfs-common and open-iscsi
# (network storage, unused here), plus dbus (systemd cgroup driver) and Debian's runc.
PACKAGES="systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,\
libseccomp2,pigz,fuse-overlayfs,bash,ca-certificates,curl,jq,procps,runc"
K8S_VERSION=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["kubernetes"]["version"])' \
    "$repo/clusters/toolchain.toml")
PAUSE_C="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
BINS_USR=(kubeadm kubelet kubectl)
BINS_LOCAL=(containerd ctr containerd-shim-runc-v2 crictl)
BINS_CNI=(host-local loopback ptp portmap)
BINS_IMAGES=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns)
STEPS=9
t_start=$(date +%s)
say() { echo "node-image: $*" >&2; }
step() { say "[$1/$STEPS] $2 (+$(( $(date +%s) - t_start ))s)"; }
die() { say "error: $*"; exit 1; }

force=0; [ "${1:-}" = --force ] && force=1

# --- inputs and their hash ------------------------------------------------------------------
[ -d "$KIND_BASE" ] || die "kind's base files not found at $KIND_BASE (run: make tools)"
[ -f "$PAUSE_C" ] || die "pause.c not found at $PAUSE_C (run: make tools)"
for b in "${BINS_USR[@]}" "${BINS_LOCAL[@]}" "${BINS_CNI[@]}" "${BINS_IMAGES[@]}"; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run: make tools, clusters/containerd/build.sh)"
done
command -v debootstrap >/dev/null && command -v gcc >/dev/null && [ -x /bin/busybox ] \
        && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || {
    say "installing debootstrap, gcc, libc6-dev, busybox-static (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends debootstrap gcc libc6-dev busybox-static >&2
}
base_hash=$( { echo "$SUITE $MIRROR $PACKAGES"; sed -n '/^# --- base/,/^# --- end base/p' "$0"; } \
    | sha256sum | cut -c1-12)
inputs_hash=$( {
    echo "$base_hash $K8S_VERSION $KIND_VERSION"
    cat "$0"; find "$here/files" "$KIND_BASE" -type f | sort | xargs sha256sum | sed 's|  .*/|  |'
    sha256sum "$PAUSE_C" /bin/busybox | cut -c1-64
    for b in "${BINS_USR[@]}" "${BINS_LOCAL[@]}" "${BINS_CNI[@]}" "${BINS_IMAGES[@]}"; do
        sha256sum "$BIN/$b" | cut -c1-64
    done
} | sha256sum | cut -c1-12)
IMAGE="$IMAGE_REPO:$K8S_VERSION-$inputs_hash"
if [ "$force" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    docker tag "$IMAGE" "$IMAGE_REPO:$K8S_VERSION"
    say "up to date: $IMAGE ($(( $(date +%s) - t_start ))s to check)"
    echo "$IMAGE"
    exit 0
fi
say "building $IMAGE (Kubernetes $K8S_VERSION, kind $KIND_VERSION)"
mkdir -p "$OUT"
work=$(mktemp -d "$OUT/work.XXXXXX")
preload_cid=""
cleanup() {
    [ -n "$preload_cid" ] && docker rm -f "$preload_cid" >/dev/null 2>&1
    for m in proc sys dev; do mountpoint -q "$work/root/$m" 2>/dev/null && umount -l "$work/root/$m"; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- base: debootstrapped bookworm, cached as a tarball -----------------------------------
base_tar="$OUT/base-$SUITE-$base_hash.tar"
if [ -f "$base_tar" ]; then
    step 1 "base rootfs: cached $(basename "$base_tar")"
else
    step 1 "base rootfs: debootstrap $SUITE with kind's base packages (a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/base" "$MIRROR" \
        > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # as kind's clean-install: no apt lists, caches, docs or man pages in the image
    rm -rf "$work/base"/var/lib/apt/lists/* "$work/base"/var/cache/apt/* "$work/base"/var/log/* \
        "$work/base"/usr/share/doc/* "$work/base"/usr/share/man/* "$work/base"/tmp/* "$work/base"/var/tmp/*
    tar -C "$work/base" --numeric-owner -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$work/base"
    find "$OUT" -maxdepth 1 -name "base-*.tar" ! -name "$(basename "$base_tar")" -delete
fi
# --- end base

# --- node rootfs ----------------------------------------------------------------------------
step 2 "node rootfs: kind's base files, systemd units, binaries, manifests"
root="$work/root"
mkdir -p "$root"
tar -C "$root" -xf "$base_tar"
f="$KIND_BASE"
install -m 0755 "$f"/usr/local/bin/* "$root/usr/local/bin/"
mkdir -p "$root/kind/bin" "$root/kind/manifests" "$root/LICENSES" "$root/etc/containerd" \
    "$root/etc/systemd/system/kubelet.service.d" "$root/etc/kubernetes/manifests" "$root/opt/cni/bin"
install -m 0644 "$f"/kind/README.txt "$root/kind/"
install -m 0755 "$f"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$f"/LICENSES/* "$root/LICENSES/"
install -m 0644 "$f"/etc/crictl.yaml "$root/etc/"
install -m 0644 "$f"/etc/containerd/* "$root/etc/containerd/"
install -m 0644 "$f"/etc/default/* "$root/etc/default/"
install -m 0644 "$f"/etc/sysctl.d/* "$root/etc/sysctl.d/"
find "$f/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$root/etc/systemd/system/" \;
install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
# TRAP: where the host's bounding set lacks CAP_SYS_RESOURCE, nothing in the node may lower
# oom_score_adj, and the CRI asks runc for -998 ("can't get final child's PID from pipe").
sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$root/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$root/etc/containerd/config.toml" \
    || die "could not set restrict_oom_score_adj in kind's containerd config"
for b in "${BINS_USR[@]}"; do install -m 0755 "$BIN/$b" "$root/usr/bin/"; done
for b in "${BINS_LOCAL[@]}"; do install -m 0755 "$BIN/$b" "$root/usr/local/bin/"; done
for b in "${BINS_CNI[@]}"; do install -m 0755 "$BIN/$b" "$root/opt/cni/bin/"; done
install -m 0755 "$here/files/loadtest-cni-agent" "$root/usr/local/bin/"
install -m 0644 "$here/files/default-cni.yaml" "$here/files/default-storage.yaml" "$root/kind/manifests/"
echo "$K8S_VERSION" > "$root/kind/version"
# the base Dockerfile's systemd steps
find "$root/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
    "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
    "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$root/etc/systemd/journald.conf"
ln -sf /lib/systemd/systemd "$root/sbin/init"
chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1
# the base Dockerfile's CRI base spec: `ctr oci spec`, plus kind's product-files hook, no rlimits
chroot "$root" /usr/local/bin/ctr oci spec \
    | chroot "$root" jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | chroot "$root" jq 'del(.process.rlimits)' > "$root/etc/containerd/cri-base.json"
[ -s "$root/etc/containerd/cri-base.json" ] || die "could not make /etc/containerd/cri-base.json"
: > "$root/etc/machine-id"

step 3 "node image stage: docker import"
stage="loadtest/kind-node-stage:$inputs_hash"
tar -C "$root" --numeric-owner -c . | docker import -c 'ENV container=docker' \
    -c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$stage" >/dev/null

# --- component images -------------------------------------------------------------------------
step 4 "component images: trees of static binaries, docker import, kubeadm's tags"
images_list=$("$BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
tag_of() { grep -E "/$1:" <<<"$images_list" | head -n1; }
# a minimal tree: passwd/group, CA bundle, /tmp; the binaries go in by the caller
new_tree() {
    local t="$work/img-$1"
    mkdir -p "$t/etc/ssl/certs" "$t/usr/local/bin" "$t/tmp" "$t/var/run" "$t/bin"
    chmod 1777 "$t/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$t/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$t/etc/group"
    echo 'hosts: files dns' > "$t/etc/nsswitch.conf"
    cp "$root/etc/ssl/certs/ca-certificates.crt" "$t/etc/ssl/certs/"
    echo "$t"
}
import_tree() {  # tree, tag, extra docker import -c changes...
    local t=$1 tag=$2; shift 2
    local changes=(-c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin')
    for c in "$@"; do changes+=(-c "$c"); done
    tar -C "$t" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
    say "      $tag"
}
# copy a binary of the node rootfs and the shared libraries it needs into a tree
copy_with_libs() {
    local t=$1 path=$2 lib
    mkdir -p "$t$(dirname "$path")"
    cp -a "$root$path" "$t$path"
    for lib in $(chroot "$root" ldd "$path" | grep -o '/[^ ]*'); do
        mkdir -p "$t$(dirname "$lib")"
        cp -L "$root$lib" "$t$lib"
    done
}
component_images=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
    t=$(new_tree "$c"); cp "$BIN/$c" "$t/usr/local/bin/"
    tag=$(tag_of "$c"); import_tree "$t" "$tag"; component_images+=("$tag")
done
t=$(new_tree etcd); cp "$BIN/etcd" "$t/usr/local/bin/"; mkdir -p "$t/var/lib/etcd"
tag=$(tag_of etcd); import_tree "$t" "$tag"; component_images+=("$tag")
t=$(new_tree coredns); cp "$BIN/coredns" "$t/coredns"
tag=$(tag_of coredns); import_tree "$t" "$tag" 'ENTRYPOINT ["/coredns"]'; component_images+=("$tag")
# kube-proxy runs iptables: both backends, their extensions, and a wrapper that picks the
# one the node uses (more rules wins), as upstream's iptables-wrapper does.
t=$(new_tree kube-proxy); cp "$BIN/kube-proxy" "$t/usr/local/bin/"
copy_with_libs "$t" /usr/sbin/xtables-nft-multi
copy_with_libs "$t" /usr/sbin/xtables-legacy-multi
mkdir -p "$t/usr/lib/x86_64-linux-gnu"
cp -a "$root/usr/lib/x86_64-linux-gnu/xtables" "$t/usr/lib/x86_64-linux-gnu/"
# the extensions load their own libraries (libxt_statistic needs libm, ...)
for so in "$root"/usr/lib/x86_64-linux-gnu/xtables/*.so; do
    copy_with_libs "$t" "/usr/lib/x86_64-linux-gnu/xtables/$(basename "$so")"
done
# kube-proxy's iptables mode also cleans up nftables leftovers with `nft`
copy_with_libs "$t" /usr/sbin/nft
cp /bin/busybox "$t/bin/busybox"
for a in sh grep wc ln mv; do ln -sf busybox "$t/bin/$a"; done
install -m 0755 "$here/files/iptables-wrapper" "$t/usr/sbin/iptables-wrapper"
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf iptables-wrapper "$t/usr/sbin/$n"
done
tag=$(tag_of kube-proxy); import_tree "$t" "$tag"; component_images+=("$tag")
# pause: built here from the Kubernetes module's pause.c, static
t=$(new_tree pause)
gcc -Os -static -DVERSION="v3.10-loadtest" -o "$t/pause" "$PAUSE_C"
tag=$(tag_of pause); import_tree "$t" "$tag" 'ENTRYPOINT ["/pause"]'; component_images+=("$tag")
# the CNI agent's pod (nsenter into the node) and nothing more: busybox
t=$(new_tree cni-agent); cp /bin/busybox "$t/bin/busybox"
for a in sh nsenter sleep; do ln -sf busybox "$t/bin/$a"; done
tag=localhost/loadtest/cni-agent:v1
import_tree "$t" "$tag"; component_images+=("$tag")

# --- pre-load the images into the node's containerd ------------------------------------------
step 5 "pre-loading ${#component_images[@]} images into the node's containerd"
preload_cid=$(docker run -d --privileged --entrypoint=sleep "$stage" infinity)
docker exec -d "$preload_cid" sh -c 'containerd > /var/log/preload-containerd.log 2>&1'
for _ in $(seq 1 60); do docker exec "$preload_cid" ctr version >/dev/null 2>&1 && break; sleep 0.5; done
docker exec "$preload_cid" ctr version >/dev/null || die "containerd did not start in the preload container"
for img in "${component_images[@]}"; do
    docker save "$img" | docker exec -i "$preload_cid" ctr -n k8s.io images import --all-platforms \
        --no-unpack --digests --label=io.cri-containerd.pinned=pinned - >/dev/null
done
docker exec "$preload_cid" ctr -n k8s.io images ls -q | sed 's/^/        in node: /' >&2
docker exec "$preload_cid" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; rm -f /var/log/preload-containerd.log'

step 6 "committing the node"
preloaded="loadtest/kind-node-preloaded:$inputs_hash"
docker commit -c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' -c 'CMD []' \
    "$preload_cid" "$preloaded" >/dev/null
docker rm -f "$preload_cid" >/dev/null; preload_cid=""

# docker import/commit cannot set STOPSIGNAL (systemd stops on SIGRTMIN+3): one local build step
step 7 "STOPSIGNAL SIGRTMIN+3 and labels (docker build, offline)"
mkdir -p "$work/ctx"
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL io.loadtest.inputs=%s io.loadtest.kubernetes=%s io.loadtest.kind=%s\n' \
    "$preloaded" "$inputs_hash" "$K8S_VERSION" "$KIND_VERSION" > "$work/ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$work/ctx" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; die "docker build of the final image failed"; }
docker tag "$IMAGE" "$IMAGE_REPO:$K8S_VERSION"

step 8 "cleaning up intermediate images and older node images"
docker rmi "$preloaded" "$stage" >/dev/null
for img in "${component_images[@]}"; do docker rmi "$img" >/dev/null 2>&1 || true; done
docker images "$IMAGE_REPO" --format '{{.Repository}}:{{.Tag}}' | grep -v -e ":$K8S_VERSION-$inputs_hash\$" \
    -e ":$K8S_VERSION\$" | xargs -r docker rmi >/dev/null 2>&1 || true
docker image prune -f >/dev/null 2>&1 || true

step 9 "done: $IMAGE, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$IMAGE"
