import json
import os
from collections import Counter

import pytest

from loadtest import config
from loadtest.config import InventorySpec
from loadtest.errors import ConfigError
from loadtest.inventory import padding
from loadtest.inventory.seed import (
    KWOK_ANNOTATION,
    LABEL,
    expected_counts,
    node_manifest,
    plan,
    pod_manifest,
)


def _size(obj) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


def test_objects_reach_their_target_size():
    spec = InventorySpec(pod_bytes=6000, node_bytes=15000)
    assert 5900 <= _size(pod_manifest(spec, 7)) <= 6100
    assert 14900 <= _size(node_manifest(spec, 3)) <= 15100


def test_pods_are_bound_to_fake_nodes_and_tolerate_their_taint():
    spec = InventorySpec(nodes=4, pods_per_node=3)
    node = node_manifest(spec, 1)
    assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
    assert node["spec"]["taints"][0]["effect"] == "NoSchedule"
    pods = [pod_manifest(spec, p) for p in range(spec.pods)]
    per_node = Counter(p["spec"]["nodeName"] for p in pods)
    assert per_node == {node_manifest(spec, i)["metadata"]["name"]: 3 for i in range(4)}
    assert all(p["spec"]["tolerations"][0]["key"] == KWOK_ANNOTATION for p in pods)
    assert all(p["metadata"]["labels"][LABEL] == spec.name for p in pods)


def test_plan_is_deterministic_unique_and_matches_counts():
    spec = InventorySpec(
        nodes=5, pods_per_node=4, namespaces=3, services_per_namespace=2, configmaps_per_namespace=1
    )
    first = [(k.name, ns, n) for k, _, ns, n in plan(spec)]
    assert first == [(k.name, ns, n) for k, _, ns, n in plan(spec)]
    assert len(set(first)) == len(first)
    counts = Counter(k for k, _, _ in first)
    want = expected_counts(spec)
    assert {k: counts[k] for k in want} == want
    assert counts["serviceaccounts"] == spec.namespaces
    # the name in the plan is the name of the object the factory builds
    for kind, factory, ns, name in plan(spec):
        md = factory()["metadata"]
        assert (md.get("namespace", ""), md["name"]) == (ns, name), kind.name


def test_order_puts_dependencies_first():
    kinds = [k.name for k, *_ in plan(InventorySpec(nodes=2, pods_per_node=1))]
    assert kinds.index("namespaces") < kinds.index("serviceaccounts") < kinds.index("pods")
    assert max(i for i, k in enumerate(kinds) if k == "nodes") < kinds.index("pods")


def test_bad_specs_are_refused_with_the_field(tmp_path):
    with pytest.raises(ConfigError, match="nodes: Input should be greater"):
        config.parse(InventorySpec, {"nodes": -1}, "flags")
    f = tmp_path / "inv.yaml"
    f.write_text("nodes: 5\npods: 3\n")
    with pytest.raises(ConfigError, match=r"inv.yaml: pods: Extra inputs are not permitted"):
        config.load(InventorySpec, f)
    f.write_text("nodes: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(InventorySpec, f)


def test_error_text_reads_protobuf_and_json_status() -> None:
    import httpx

    from loadtest.inventory.seed import _error_text

    # A protobuf Status: binary framing around plain strings (creates ask for protobuf).
    body = (
        b"k8s\x00\n\x0c\n\x02v1\x12\x06Status\x12\x8a\x01\n\x04\n\x00\x12\x00"
        b'\x12\x07Failure\x1a8pods "x" is forbidden: error looking up service account'
        b'"\x0cForbidden(\x93\x03'
    )
    r = httpx.Response(
        403, content=body, headers={"content-type": "application/vnd.kubernetes.protobuf"}
    )
    assert "error looking up service account" in _error_text(r)
    j = httpx.Response(422, json={"kind": "Status", "message": "bad pod"})
    assert _error_text(j) == "bad pod"


# --- padding: a real object's entropy -------------------------------------------------------


def _ratio(obj) -> float:
    return padding.gzip_ratio(json.dumps(obj, separators=(",", ":")).encode())


def _pad_text(obj) -> str:
    return obj["metadata"]["annotations"]["loadtest.io/padding"]


@pytest.mark.parametrize("size", [100, 2_345, 40_000])
def test_filler_is_sized_json_safe_and_fixed_by_its_key(size: int) -> None:
    text = padding.filler("pod/ns/a", size, 0.3)
    assert len(text) == size and len(json.dumps(text)) == size + 2  # nothing to escape
    assert text == padding.filler("pod/ns/a", size, 0.3)
    assert text != padding.filler("pod/ns/b", size, 0.3)


def test_padding_is_the_same_in_every_process() -> None:
    """A str seed must not depend on PYTHONHASHSEED: a rerun builds the same objects."""
    import subprocess
    import sys

    code = (
        "import hashlib, json; from loadtest.config import InventorySpec; "
        "from loadtest.inventory.seed import pod_manifest; "
        "print(hashlib.sha256(json.dumps(pod_manifest(InventorySpec(), 7)).encode())"
        ".hexdigest())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_each_object_has_its_own_padding() -> None:
    spec = InventorySpec(nodes=4, pods_per_node=2)
    pads = [_pad_text(pod_manifest(spec, p)) for p in range(spec.pods)]
    assert len(set(pads)) == len(pads)
    other = InventorySpec(name="other", nodes=4, pods_per_node=2)
    assert _pad_text(pod_manifest(other, 0)) != pads[0]
    assert _pad_text(node_manifest(spec, 0)) != _pad_text(node_manifest(spec, 1))


@pytest.mark.parametrize(("pod_bytes", "node_bytes"), [(5_000, 12_000), (10_000, 20_000)])
def test_objects_compress_like_real_ones(pod_bytes: int, node_bytes: int) -> None:
    """gzip level 1 (the API server's) of a whole seeded object, against real objects'
    ratios (loadtest/inventory/padding.py): within 20%. One repeated character made a default pod
    compress 6.3x and a node 7.4x."""
    spec = InventorySpec(pod_bytes=pod_bytes, node_bytes=node_bytes)
    for obj, kind in ((pod_manifest(spec, 11), "pod"), (node_manifest(spec, 5), "node")):
        assert _size(obj) == pytest.approx({"pod": pod_bytes, "node": node_bytes}[kind], abs=100)
        assert _ratio(obj) == pytest.approx(padding.RATIOS[kind], rel=0.2), kind
        # the padding alone is no easier to compress than a real object
        assert padding.gzip_ratio(_pad_text(obj).encode()) < padding.RATIOS[kind] * 1.2


def test_lists_of_seeded_objects_compress_like_real_ones() -> None:
    """What the API server gzips: many objects in a row, each repeating its neighbour's
    structure. As created (before the server adds managedFields and status), a LIST is
    between one real object and the top of a real LIST's band; one repeated character made
    these 32x (pods) and 28x (nodes)."""
    spec = InventorySpec(nodes=50, pods_per_node=10, namespaces=5)
    pods = sorted(
        (pod_manifest(spec, p) for p in range(spec.pods)),
        key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]),
    )
    nodes = [node_manifest(spec, i) for i in range(spec.nodes)]
    for kind, items in (("pod", pods), ("node", nodes)):
        ratio = _ratio({"kind": "List", "items": items})
        assert padding.RATIOS[kind] <= ratio <= padding.list_band(kind)[1], (kind, ratio)
