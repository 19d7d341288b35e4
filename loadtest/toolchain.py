"""Where the harness's own Kubernetes binaries live, and building them from Go modules.

No registry here ships Kubernetes, so every binary is built from the Go module proxy
through wrapper modules in clusters/toolchain/, pinned in clusters/toolchain.toml, into a
cache outside the repo. A component is rebuilt only when its pinned inputs change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.errors import CommandError, ConfigError, ToolsMissing

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN_FILE = REPO_ROOT / "clusters" / "toolchain.toml"
TOOLCHAIN_DIR = REPO_ROOT / "clusters" / "toolchain"

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The cache outside the repo: $LOADTEST_CACHE, else ~/.cache/loadtest."""
    return Path(os.environ.get("LOADTEST_CACHE") or Path.home() / ".cache" / "loadtest")


def bin_dir() -> Path:
    return cache_dir() / "bin"


@dataclass(frozen=True)
class Component:
    """One pinned tool: a wrapper Go module and the commands built from it."""

    name: str
    version: str
    module: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    version_check: tuple[str, ...] = ()

    @property
    def module_dir(self) -> Path:
        return TOOLCHAIN_DIR / self.module

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(self.rename.get(_go_binary_name(p), _go_binary_name(p)) for p in self.packages)

    def fingerprint(self) -> str:
        """Hash of everything that decides the binaries: pins, module files, flags, Go."""
        h = hashlib.sha256()
        for part in (self.version, *self.packages, *self.ldflags, _go_version()):
            h.update(part.encode() + b"\0")
        for name in ("go.mod", "go.sum"):
            h.update((self.module_dir / name).read_bytes())
        if self.version == "local":  # the project's own Go code: its sources decide too
            for f in sorted(self.module_dir.rglob("*.go")):
                h.update(str(f.relative_to(self.module_dir)).encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]


def _go_binary_name(package: str) -> str:
    # `go build -o dir/` names a command after its last path element, skipping a /vN suffix.
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and parts[-1][0] == "v" and parts[-1][1:].isdigit():
        return parts[-2]
    return parts[-1]


_GO_VERSION: str | None = None


def _go_version() -> str:
    global _GO_VERSION
    if _GO_VERSION is None:
        go = shutil.which("go")
        if go is None:
            raise ToolsMissing("the Go toolchain is not on PATH: install Go to build the tools")
        _GO_VERSION = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return _GO_VERSION


def load_components(path: Path = TOOLCHAIN_FILE) -> list[Component]:
    """Read the pinned toolchain; a malformed file is a ConfigError naming the entry."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    out = []
    for name, entry in data.items():
        try:
            version = entry["version"]
            out.append(
                Component(
                    name=name,
                    version=version,
                    module=entry["module"],
                    packages=tuple(entry["packages"]),
                    ldflags=tuple(f.format(version=version) for f in entry.get("ldflags", [])),
                    rename=dict(entry.get("rename", {})),
                    version_check=tuple(entry.get("version_check", [])),
                )
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: [{name}] is missing or has a bad field: {e}") from e
    return out


def versions() -> dict[str, str]:
    """Pinned versions by component name, for reports and fingerprints."""
    return {c.name: c.version for c in load_components()}


def _stamp(c: Component) -> Path:
    return bin_dir() / f".{c.name}.stamp"


def is_built(c: Component) -> bool:
    stamp = _stamp(c)
    return (
        stamp.exists()
        and stamp.read_text().strip() == c.fingerprint()
        and all((bin_dir() / b).exists() for b in c.binaries)
    )


def build(names: list[str] | None = None, log: Log = _stderr, force: bool = False) -> None:
    """Build the named components (default: all) that are missing or out of date."""
    comps = load_components()
    if names:
        unknown = set(names) - {c.name for c in comps}
        if unknown:
            raise ConfigError(
                f"unknown tool component(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(c.name for c in comps)}"
            )
        comps = [c for c in comps if c.name in names]
    bin_dir().mkdir(parents=True, exist_ok=True)
    total = time.monotonic()
    for i, c in enumerate(comps, 1):
        prefix = f"[{i}/{len(comps)}] {c.name} {c.version}"
        if not force and is_built(c):
            log(f"{prefix}: up to date ({', '.join(c.binaries)})")
            continue
        log(f"{prefix}: building {len(c.packages)} command(s) into {bin_dir()}")
        t0 = time.monotonic()
        _build_one(c, log, prefix)
        _stamp(c).write_text(c.fingerprint() + "\n")
        log(f"{prefix}: built in {time.monotonic() - t0:.0f}s")
    log(f"tools ready in {bin_dir()} ({time.monotonic() - total:.0f}s)")


def _build_one(c: Component, log: Log, prefix: str) -> None:
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        # Static binaries: the kind node's component images carry no libc.
        cmd = ["go", "build", "-o", tmp + "/"]
        if c.ldflags:
            cmd += ["-ldflags", " ".join(c.ldflags)]
        cmd += list(c.packages)
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
        logfile = Path(tmp) / "build.log"
        with logfile.open("w") as out:
            proc = subprocess.Popen(
                cmd, cwd=c.module_dir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            t0 = last = time.monotonic()
            # A cold Kubernetes build takes minutes: say it is still going.
            while proc.poll() is None:
                time.sleep(1)
                if time.monotonic() - last >= 30:
                    last = time.monotonic()
                    elapsed = int(last - t0)
                    log(f"{prefix}: still compiling ({elapsed // 60}m{elapsed % 60:02d}s)")
        if proc.returncode != 0:
            raise CommandError(
                f"building {c.name} {c.version}", cmd, proc.returncode, logfile.read_text()
            )
        for pkg in c.packages:
            src = _go_binary_name(pkg)
            os.replace(Path(tmp) / src, bin_dir() / c.rename.get(src, src))


def binary(name: str) -> Path:
    """Path of one built binary, or ToolsMissing telling the user to run `make tools`."""
    p = bin_dir() / name
    if not p.exists():
        raise ToolsMissing(f"{name} is not built (looked in {bin_dir()}): run `make tools`")
    return p


def status() -> list[tuple[str, str, bool]]:
    """(component, version, built and current) for every pinned component."""
    return [(c.name, c.version, is_built(c)) for c in load_components()]


def reported_versions() -> dict[str, str]:
    """What each built binary says of itself (its --version line), for fingerprints."""
    out = {}
    for c in load_components():
        if not c.version_check:
            continue
        exe = bin_dir() / c.version_check[0]
        if not exe.exists():
            out[c.name] = "not built"
            continue
        r = subprocess.run([str(exe), *c.version_check[1:]], capture_output=True, text=True)
        out[c.name] = (
            (r.stdout or r.stderr).strip().splitlines()[0]
            if (r.stdout or r.stderr)
            else f"exit {r.returncode}"
        )
    return out
