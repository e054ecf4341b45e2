"""Static checks of the Dockerfile and .dockerignore (no Docker daemon needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: What the build needs, per the packaging: setup.py maps avro/ into connector.schemas.
BUILD_CONTEXT = {
    "connector",
    "avro",
    "pyproject.toml",
    "setup.py",
    "README.md",
    "requirements.lock",
}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def build_args() -> dict[str, str]:
    values = {}
    for rest in args_of("ARG"):
        key, _, default = rest.partition("=")
        values[key] = default
    return values


def resolve(ref: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: build_args().get(m.group(1), m.group(0)), ref)


def test_multi_stage_slim_python_pinned_by_tag():
    stages = [shlex.split(rest) for rest in args_of("FROM")]
    assert len(stages) >= 2, "expected a multi-stage build"
    for stage in stages:
        image = resolve(stage[0])
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm", image), image
    names = {s[2] for s in stages if len(s) == 3 and s[1].upper() == "AS"}
    assert {"build", "runtime"} <= names
    assert "latest" not in DOCKERFILE.read_text()


def test_dependencies_come_from_the_lock_file_and_project_without_deps():
    runs = " ".join(args_of("RUN"))
    assert "pip install --no-deps --require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    copies = " ".join(args_of("COPY"))
    assert "requirements.lock" in copies
    # The lock is installed before the sources are copied, so code edits keep the deps layer.
    text = DOCKERFILE.read_text()
    assert text.index("-r requirements.lock") < text.index("COPY connector")


def test_runs_as_non_root_numeric_user():
    users = args_of("USER")
    assert users, "no USER instruction"
    final = resolve(users[-1])
    uid = final.split(":")[0]
    defaults = build_args()
    uid = defaults.get(uid.strip("${}"), uid)
    assert uid.isdigit() and int(uid) >= 1000, final
    # USER must come after the last FROM, i.e. apply to the runtime stage.
    order = [word for word, _ in instructions()]
    assert max(i for i, w in enumerate(order) if w == "USER") > max(
        i for i, w in enumerate(order) if w == "FROM"
    )


def test_entrypoint_is_the_connector_worker():
    assert json.loads(args_of("ENTRYPOINT")[-1]) == ["connector"]
    assert json.loads(args_of("CMD")[-1]) == ["worker"]
    assert "6066" in args_of("EXPOSE")[-1]


def test_healthcheck_uses_python_urllib_against_healthz():
    (check,) = args_of("HEALTHCHECK")
    assert "CMD" in check
    exec_form = json.loads(check[check.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"]
    code = exec_form[2]
    assert "urllib.request" in code and "/healthz" in code and "127.0.0.1" in code
    assert "curl" not in check and "wget" not in check
    compile(code, "<healthcheck>", "exec")


def test_data_dir_default_is_writable_under_a_read_only_root():
    env = " ".join(args_of("ENV"))
    assert "CONNECTOR_DATA_DIR=/tmp/" in env


def dockerignore_excludes(path: str) -> bool:
    """Docker's last-match-wins evaluation of .dockerignore patterns (enough for this file)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        candidates = {pattern}
        if pattern.startswith("**/"):
            candidates.add(pattern[3:])
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates) or any(
            fnmatch.fnmatchcase(part, pattern[3:]) for part in parts if pattern.startswith("**/")
        ):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        "connector/worker/app.py",
        "avro/order_event.avsc",
        "pyproject.toml",
        "setup.py",
        "README.md",
        "requirements.lock",
    ],
)
def test_dockerignore_keeps_the_build_context(path):
    assert not dockerignore_excludes(path), path


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/unit/test_codec.py",
        "deploy/accounts.yaml",
        "helm/exchange-order-connector/values.yaml",
        "connector/__pycache__/x.cpython-311.pyc",
        "docker-compose.yml",
        ".env",
    ],
)
def test_dockerignore_drops_everything_else(path):
    assert dockerignore_excludes(path), path


def test_every_copy_source_is_in_the_build_context():
    for rest in args_of("COPY"):
        if rest.startswith("--from"):
            continue
        *sources, _dest = shlex.split(rest)
        for src in sources:
            assert src.rstrip("/") in BUILD_CONTEXT, src
            assert not dockerignore_excludes(src.rstrip("/")), src


def test_build_context_files_exist():
    """The image cannot build without these (README.md: pyproject's readme; lock: deps)."""
    missing = sorted(p for p in BUILD_CONTEXT if not (ROOT / p).exists())
    assert not missing, f"missing from the repository root: {missing}"
