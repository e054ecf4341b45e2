"""No core module names a venue: exchange knowledge lives in connector/exchanges/<venue>/.

Every registered venue's name (and title) is searched for, case-insensitively, in every module
of ``connector/`` outside the venue packages; ``ExchangeAdapter``-style words do not match
because only whole venue names count.
"""

from __future__ import annotations

import re
from pathlib import Path

from connector.exchanges import registry

CONNECTOR = Path(__file__).resolve().parents[2] / "connector"


def core_modules() -> list[Path]:
    venue_dirs = {CONNECTOR / "exchanges" / name for name in registry.venues()}
    return [
        p for p in sorted(CONNECTOR.rglob("*.py")) if not any(d in p.parents for d in venue_dirs)
    ]


def test_the_built_in_venues_are_registered_packages() -> None:
    venues = registry.venues()
    assert len(venues) >= 2
    for name in venues:
        assert (CONNECTOR / "exchanges" / name / "__init__.py").is_file()


def test_no_core_module_names_a_venue() -> None:
    words = {w.lower() for v in registry.venues().values() for w in (v.name, v.title)}
    pattern = re.compile(r"(?<![a-z])(" + "|".join(map(re.escape, words)) + r")(?![a-z])", re.I)
    modules = core_modules()
    assert CONNECTOR / "pipeline.py" in modules and CONNECTOR / "commands.py" in modules
    offenders = [
        f"{p.relative_to(CONNECTOR.parent)}:{n}: {line.strip()}"
        for p in modules
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_the_check_would_catch_a_venue_name() -> None:
    words = {v.name for v in registry.venues().values()}
    pattern = re.compile(r"(?<![a-z])(" + "|".join(words) + r")(?![a-z])", re.I)
    assert all(pattern.search(f'if exchange == "{w}":') for w in words)
