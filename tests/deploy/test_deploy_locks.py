"""The lock files: exact pins with sha256 hashes, installed in hash-checking mode.

``make lock`` regenerates both from pyproject.toml (README "Development"). Checked here: every
requirement is pinned with ``==`` and carries hashes; the dev lock has every runtime pin at the
same version (it is compiled with the runtime lock as a constraint); every direct dependency
of pyproject.toml is locked; and both the Makefile and the Dockerfile install with
``--require-hashes``, so a tampered or substituted download fails the install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements.lock"
DEV = ROOT / "requirements-dev.lock"


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for every requirement of a pip requirements file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continuation lines
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        spec, *options = line.split(" --hash=")
        req = Requirement(spec.strip())
        (specifier,) = req.specifier
        assert specifier.operator == "==", f"{path.name}: {spec} is not an exact pin"
        out[canonicalize_name(req.name)] = (specifier.version, [o.strip() for o in options])
    return out


@pytest.mark.parametrize("path", [RUNTIME, DEV], ids=lambda p: p.name)
def test_every_requirement_is_pinned_with_hashes(path: Path) -> None:
    locked = entries(path)
    assert len(locked) > 20
    for name, (_, hashes) in locked.items():
        assert hashes, f"{path.name}: {name} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_entries_rejects_an_unhashed_or_unpinned_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lock"
    bad.write_text("httpx>=0.28 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(AssertionError, match="exact pin"):
        entries(bad)


def test_dev_lock_agrees_with_runtime_lock_and_locks_every_direct_dependency() -> None:
    runtime, dev = entries(RUNTIME), entries(DEV)
    for name, (version, _) in runtime.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: dev lock differs from runtime"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(runtime[name][0]), f"{name}: lock outside the range"
    for spec in project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in dev, f"{name} is a dev dependency but not in requirements-dev.lock"
        assert req.specifier.contains(dev[name][0]), f"{name}: lock outside the range"


def test_installs_are_hash_checked() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--generate-hashes" in makefile  # `make lock`
    assert "--require-hashes -r requirements.lock" in (ROOT / "Dockerfile").read_text()
