"""Reading ``connector sandbox --orders-file``, shared by every simulator.

The file is YAML; JSON (a subset of YAML) is read by the json module first, since a seeded
benchmark book is megabytes and PyYAML's pure-Python parser takes minutes over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_orders_file(path: str | Path) -> Any:
    """The file's content (None for an empty file)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)
