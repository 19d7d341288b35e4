"""Filler for seeded objects that compresses like the content of real objects.

A LIST is gzipped by the API server (level 1, responses over 128 KiB), so what the padding
is made of decides the bytes on the wire and the compression work. One repeated character
compresses ~16x and under-states both. Real objects are mostly a repeated vocabulary (field
names, label keys, image names) interleaved with fresh high-entropy values (UIDs, digests,
timestamps, IPs): the filler draws from the same two kinds of token, deterministically from
a key, with the share of fresh values tuned to a measured ratio (see RATIOS).
"""

from __future__ import annotations

import gzip
import random
import zlib
from dataclasses import dataclass, field

import httpx

from loadtest.errors import ClusterError

# gzip level 1 ratios (decoded / compressed, compact JSON, zlib) of real objects, measured
# with benchmarks/bench_padding.py (2026-12-01):
# - one object: a GKE Deployment's pod with managedFields and status 2.65 and a GKE node with
#   25 images 3.04 (Kubernetes' own testdata: k8s.io/apiserver .../responsewriters/testdata/
#   pod.json, k8s.io/apimachinery pkg/util/managedfields/node.yaml); a kind cluster's
#   kube-system pods 3.17 (median of 12) and nodes 3.10 (median of 3).
# - a LIST: that kind cluster's kube-system pods 7.4 (protobuf 6.35), its nodes 6.9 (5.0).
#   Objects in a row repeat their neighbours' structure: a list compresses better than one.
RATIOS = {"pod": 2.9, "node": 3.07}  # one object, the mean of the samples
LIST_RATIOS = {"pod": 7.4, "node": 6.9}
# How far a LIST of seeded objects may be from LIST_RATIOS, either way. The API server's Go
# gzip came out ~5% below zlib's on the same seeded LIST body.
LIST_TOLERANCE = 0.25
# The share of fresh values in the filler that gives those ratios to seeded objects of the
# default sizes once the API server and KWOK added managedFields and status (tuned with
# bench_padding.py; tests/unit/test_inventory.py and the integration test hold them).
FRESH = {"pod": 0.30, "node": 0.20}


def list_band(kind: str) -> tuple[float, float]:
    """The gzip ratio a LIST of seeded objects of `kind` must stay within."""
    r = LIST_RATIOS[kind]
    return r * (1 - LIST_TOLERANCE), r * (1 + LIST_TOLERANCE)


# What repeats in real objects: keys, label keys and values, image names, enum values,
# quantities, paths.
_WORDS = """
apiVersion kind metadata name namespace labels annotations uid resourceVersion
creationTimestamp generation ownerReferences controller blockOwnerDeletion managedFields
manager operation Update Apply fieldsType FieldsV1 fieldsV1 f:metadata f:labels f:spec
f:status f:containers f:image f:env f:name f:value f:ports f:containerPort f:protocol
f:resources f:limits f:requests f:cpu f:memory f:conditions f:lastTransitionTime f:type
spec containers initContainers image imagePullPolicy IfNotPresent Always ports
containerPort protocol TCP UDP env value valueFrom fieldRef fieldPath secretKeyRef
configMapKeyRef resources limits requests cpu memory ephemeral-storage volumeMounts
mountPath readOnly subPath volumes configMap secret projected serviceAccountToken
expirationSeconds downwardAPI items key path defaultMode livenessProbe readinessProbe
startupProbe httpGet tcpSocket exec command args periodSeconds timeoutSeconds
failureThreshold successThreshold initialDelaySeconds terminationMessagePath
/dev/termination-log terminationMessagePolicy File FallbackToLogsOnError securityContext
runAsNonRoot runAsUser allowPrivilegeEscalation capabilities drop ALL readOnlyRootFilesystem
seccompProfile RuntimeDefault dnsPolicy ClusterFirst enableServiceLinks nodeName
preemptionPolicy PreemptLowerPriority priority priorityClassName restartPolicy
schedulerName default-scheduler serviceAccount serviceAccountName default
terminationGracePeriodSeconds tolerations effect NoExecute NoSchedule operator Exists
tolerationSeconds node.kubernetes.io/not-ready node.kubernetes.io/unreachable affinity
podAntiAffinity preferredDuringSchedulingIgnoredDuringExecution topologyKey weight
topologySpreadConstraints maxSkew whenUnsatisfiable ScheduleAnyway status phase Running
conditions lastProbeTime lastTransitionTime Initialized Ready ContainersReady PodScheduled
PodReadyToStartContainers True False containerStatuses containerID imageID lastState
ready restartCount started state running startedAt hostIP hostIPs podIP podIPs ip
qosClass Burstable Guaranteed BestEffort startTime app app.kubernetes.io/name
app.kubernetes.io/instance app.kubernetes.io/version app.kubernetes.io/component
app.kubernetes.io/part-of app.kubernetes.io/managed-by Helm helm.sh/chart
pod-template-hash controller-revision-hash pod-template-generation
kubectl.kubernetes.io/default-container kubectl.kubernetes.io/restartedAt
prometheus.io/scrape prometheus.io/port prometheus.io/path /metrics
sidecar.istio.io/status sidecar.istio.io/inject istio-proxy istio-init
cluster-autoscaler.kubernetes.io/safe-to-evict checksum/config checksum/secret
topology.kubernetes.io/zone topology.kubernetes.io/region kubernetes.io/hostname
kubernetes.io/os linux kubernetes.io/arch amd64 node.kubernetes.io/instance-type
docker.io/library/nginx registry.k8s.io/pause registry.k8s.io/kube-proxy
registry.k8s.io/coredns/coredns quay.io/prometheus/node-exporter
gcr.io/distroless/static ghcr.io/fluxcd/source-controller public.ecr.aws/eks-distro
docker.io/bitnami/redis docker.io/grafana/promtail quay.io/jetstack/cert-manager-controller
v1 apps/v1 ReplicaSet DaemonSet StatefulSet Job batch/v1 100m 250m 500m 1 2 64Mi 128Mi
256Mi 512Mi 1Gi 2Gi 8080 8443 9090 9100 15090 http https grpc metrics health /healthz
/readyz /livez /ready /etc/config /var/run/secrets/kubernetes.io/serviceaccount
kube-api-access kube-root-ca.crt ca.crt token LOG_LEVEL info JAVA_OPTS GOMAXPROCS
POD_NAME POD_NAMESPACE NODE_NAME POD_IP HOST_IP metadata.name metadata.namespace
spec.nodeName status.podIP status.hostIP true false null
"""
VOCABULARY = tuple(_WORDS.split())
# Records as real objects hold them (an env entry, a port, a condition, a managedFields
# entry): a fixed sequence of keys, each with the few values it takes in practice. Built once
# from a fixed seed, so every process makes the same filler.
_SCHEMA_RNG = random.Random("loadtest.inventory.padding/schemas")
_SCHEMAS = tuple(
    tuple(_SCHEMA_RNG.sample(VOCABULARY, _SCHEMA_RNG.randrange(3, 9))) for _ in range(32)
)
_VALUES = {
    k: tuple(_SCHEMA_RNG.sample(VOCABULARY, _SCHEMA_RNG.randrange(1, 4))) for k in VOCABULARY
}
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of generated-name suffixes


def _fresh(rng: random.Random) -> str:
    """One value as unique as real objects carry them: a UID, a digest, a time, an IP..."""
    bits = rng.getrandbits(256)
    kind = (bits >> 248) % 6  # the top byte picks; the low bits fill
    if kind == 0:
        h = f"{bits >> 128:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"
    if kind == 1:
        return f"sha256:{bits:064x}"
    if kind == 2:
        return (
            f"2026-{1 + bits % 12:02d}-{1 + (bits >> 8) % 28:02d}T{(bits >> 16) % 24:02d}:"
            f"{(bits >> 24) % 60:02d}:{(bits >> 32) % 60:02d}Z"
        )
    if kind == 3:
        return f"10.{(bits >> 8) % 256}.{(bits >> 16) % 256}.{1 + (bits >> 24) % 254}"
    if kind == 4:  # a generated name's suffix, a template hash
        return "".join(_SUFFIX[(bits >> (8 * i)) % 27] for i in range(5 + 5 * (bits >> 247 & 1)))
    return str((bits >> 8) % 10**9)  # a resourceVersion, a port, a size


def filler(key: str, size: int, fresh: float) -> str:
    """`size` characters for `key` (same key, same text), safe in a JSON string as they are.

    `fresh` is the probability that a value is fresh rather than one of its key's usual ones.
    """
    rng = random.Random(key)  # a str seed is hashed with SHA-512: stable across processes
    rand = rng.random
    out: list[str] = []
    n = 0
    while n < size:
        for k in _SCHEMAS[int(rand() * len(_SCHEMAS))]:
            if rand() < fresh:
                v = _fresh(rng)
            else:
                usual = _VALUES[k]
                v = usual[int(rand() * len(usual))]
            out.append(f"{k}:{v},")
            n += len(k) + len(v) + 2
        out[-1] = out[-1][:-1] + ";"
    return "".join(out)[:size]


def gzip_ratio(data: bytes, level: int = 1) -> float:
    """Decoded / compressed bytes at the API server's gzip level (1)."""
    return len(data) / len(zlib.compress(data, level))


@dataclass(frozen=True)
class WireSize:
    """One response as it travelled and as it decodes."""

    wire: int  # body bytes as sent (gzip when the server compressed it)
    gzipped: bool
    body: bytes = field(repr=False)  # decoded

    @property
    def decoded(self) -> int:
        return len(self.body)

    @property
    def ratio(self) -> float:
        return self.decoded / self.wire if self.wire else 0.0


def get_sizes(
    client: httpx.Client,
    path: str,
    params: dict[str, str] | None = None,
    accept: str = "application/json",
) -> WireSize:
    """GET as Go clients do (Accept-Encoding: gzip) and measure the raw body: the API server
    compresses responses over 128 KiB at gzip level 1."""
    headers = {"Accept": accept, "Accept-Encoding": "gzip"}
    with client.stream("GET", path, params=params, headers=headers) as r:
        raw = b"".join(r.iter_raw())
        if r.status_code != 200:
            raise ClusterError(f"GET {path}: HTTP {r.status_code}: {raw[:300]!r}")
        gzipped = r.headers.get("content-encoding", "") == "gzip"
    return WireSize(len(raw), gzipped, gzip.decompress(raw) if gzipped else raw)
