"""Exchange JSON without floats, shared by every venue package.

Exchanges mostly quote their numbers, but not always; an unquoted ``66000.5`` must never pass
through a float on the way in, nor be re-quoted on the way out to the audit ``raw`` field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON number {name} is not allowed")


def loads(text: str | bytes) -> Any:
    """Parse exchange JSON: fractions become Decimal, NaN/Infinity are refused (ValueError)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def dump_raw(value: Any) -> str:
    """Compact JSON of a parsed payload, keeping key order and the exact number text.

    Exchanges normally quote their numbers, so the C encoder gives the exact text; only a
    payload holding a bare number (a Decimal, which json.dumps refuses) takes the slow path.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        return _dump_exact(value)


def _dump_exact(value: Any) -> str:
    if isinstance(value, Mapping):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{_dump_exact(v)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dump_exact(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"not a JSON value: {type(value).__name__}")
