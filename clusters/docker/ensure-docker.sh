#!/usr/bin/env bash
# make docker: a working Docker engine, idempotently.
#  1. an engine that already answers and can run privileged containers is used as it is;
#  2. otherwise Debian's docker.io and iptables are installed if missing;
#  3. only if this host's capability bounding set lacks capabilities that --privileged asks
#     for (CAP_SYS_RESOURCE in some sandboxes), the OCI runtime wrapper loadtest-runc is
#     installed and registered as dockerd's default runtime;
#  4. dockerd is started if none runs (or reloaded with SIGHUP to pick up the runtime).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
WRAPPER=/usr/local/libexec/loadtest-runc
DAEMON_JSON=/etc/docker/daemon.json
LOG=/var/log/loadtest-dockerd.log
say() { echo "docker: $*" >&2; }

# The caps Docker's --privileged grants are all of them; the wrapper is needed when the
# host's bounding set lacks any of the first 41 (CAP_SYS_RESOURCE is bit 24).
host_lacks_caps() {
    local bnd
    bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
    (( (0x$bnd & (1 << 24)) == 0 )) || (( (0x$bnd & 0x1ffffffffff) != 0x1ffffffffff ))
}

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

privileged_ok() {
    # A privileged container start plus a docker exec into it, the two paths kind uses.
    local img id ok=1
    img=$(docker images -q --no-trunc | head -n1)
    [ -n "$img" ] || return 2  # no image to try with: undecided
    id=$(docker run -d --privileged --entrypoint /bin/sh "$img" -c 'sleep 30' 2>/dev/null) || return 1
    docker exec "$id" true >/dev/null 2>&1 || ok=0
    docker rm -f "$id" >/dev/null 2>&1 || true
    [ "$ok" = 1 ]
}

# 1. use a working engine as it is
if engine_up && ! host_lacks_caps; then
    say "engine answers and the host grants every capability: using it as is"
    exit 0
fi
if engine_up && [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = loadtest-runc ]; then
    say "engine answers with the loadtest-runc runtime: using it as is"
    exit 0
fi
if engine_up && privileged_ok; then
    say "engine answers and runs privileged containers: using it as is"
    exit 0
fi

# 2. packages
if ! command -v dockerd >/dev/null || ! command -v iptables >/dev/null \
        || ! [ -x /usr/sbin/runc ]; then
    say "installing docker.io and iptables (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io iptables runc containerd >&2
fi

# 3. the runtime wrapper, only where the host needs it
if host_lacks_caps; then
    say "host bounding set lacks capabilities (CapBnd $(awk '/^CapBnd:/ {print $2}' /proc/self/status)): registering $WRAPPER as default runtime"
    install -D -m 0755 "$here/loadtest-runc" "$WRAPPER"
    mkdir -p "$(dirname "$DAEMON_JSON")"
    python3 - "$DAEMON_JSON" "$WRAPPER" <<'PY'
import json, os, sys
path, wrapper = sys.argv[1], sys.argv[2]
conf = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
conf.setdefault("runtimes", {})["loadtest-runc"] = {"path": wrapper}
conf["default-runtime"] = "loadtest-runc"
json.dump(conf, open(path, "w"), indent=2)
PY
fi

# 4. start (or reload) dockerd
if pid=$(pgrep -x dockerd | head -n1) && [ -n "$pid" ]; then
    say "dockerd running (pid $pid): reloading its configuration (SIGHUP)"
    kill -HUP "$pid"
elif command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    say "starting docker.service"
    systemctl start docker
else
    say "starting dockerd (log: $LOG)"
    nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
done
engine_up || { say "dockerd did not answer within 60s; see $LOG"; tail -n 20 "$LOG" >&2; exit 1; }
if host_lacks_caps; then
    for _ in $(seq 1 20); do
        [ "$(docker info --format '{{.DefaultRuntime}}')" = loadtest-runc ] && break
        sleep 0.5
    done
fi
say "ready: server $(docker version --format '{{.Server.Version}}'), default runtime $(docker info --format '{{.DefaultRuntime}}')"
