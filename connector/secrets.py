"""Secrets as values, and the redaction of them from anything the connector writes out.

Credentials travel as :class:`Secret`, which refuses to print itself. Every secret loaded is also
registered here (:func:`register_secrets`), so :func:`redact` and :func:`contains_secret` can
scrub it from log lines, error messages and outgoing records: the last line of defence.

A leaf module: it imports nothing from the connector, so anything (the logs, the pipeline, a
venue's auth code) can use it without pulling in settings, the venue registry or the accounts
file loader, and without import cycles (tests/unit/test_architecture.py).
"""

from __future__ import annotations

import re
import threading

from ahocorasick_rs import AhoCorasick, BytesAhoCorasick, Implementation


class Secret:
    """A credential that refuses to print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_secrets: set[str] = set()
# Longest first, so a secret containing another is replaced whole. Rebuilt on registration
# (start-up) rather than sorted on every log line.
_ordered: tuple[tuple[str, bytes], ...] = ()
_automaton: AhoCorasick | None = None  # over _secrets; None while there are none
_bytes_automaton: BytesAhoCorasick | None = None  # the same over their UTF-8 bytes
# Whether every secret reads the same inside a JSON string: none holds a character JSON escapes
# (quote, backslash, control characters). See :func:`secrets_survive_json`.
_json_safe = True
_lock = threading.Lock()
REDACTED = "***"


def register_secrets(*secrets: Secret | None) -> None:
    """Remember secret values so :func:`redact` can scrub them from any output."""
    global _ordered, _automaton, _bytes_automaton, _json_safe
    with _lock:
        for s in secrets:
            # Very short values would redact ordinary text; real credentials are long.
            if s is not None and len(s.reveal()) >= 4:
                _secrets.add(s.reveal())
        _ordered = tuple((s, s.encode()) for s in sorted(_secrets, key=len, reverse=True))
        _automaton = (
            AhoCorasick(list(_secrets), implementation=Implementation.DFA) if _secrets else None
        )
        _bytes_automaton = (
            BytesAhoCorasick([b for _, b in _ordered], implementation=Implementation.DFA)
            if _secrets
            else None
        )
        _json_safe = not any(_JSON_ESCAPED.search(s) for s in _secrets)


def redact(text: str) -> str:
    """Replace every registered secret value in ``text``."""
    for s, _ in _ordered:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def secrets_survive_json() -> bool:
    """True when no secret holds a character a JSON encoder escapes (``"``, ``\\``, U+0000 to
    U+001F). JSON escaping maps each character on its own, so then any string holding a secret
    still holds it verbatim once JSON-encoded, and :func:`contains_secret` may scan the JSON
    of a whole record at once (connector/pipeline.py)."""
    return _json_safe


def contains_secret(text: str) -> bool:
    """Whether :func:`redact` would change ``text``: one Aho-Corasick pass (Rust, ahocorasick-rs)
    over ``text`` for all secrets at once. A worker with many accounts holds many secrets and
    every outgoing record is checked; one ``in`` per secret was the worker's top cost (py-spy,
    ``make bench``), ten times this. Any occurrence yields at least one match."""
    automaton = _automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(text))


def contains_secret_utf8(data: bytes) -> bool:
    """:func:`contains_secret` for UTF-8 ``data``, without decoding it (a third cheaper per
    character). The same answer as on the decoded text: a secret's UTF-8 starts with a lead
    byte, so its bytes can only match at a character boundary of valid UTF-8."""
    automaton = _bytes_automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(data))


def redact_bytes(data: bytes) -> bytes:
    for _, b in _ordered:
        if b in data:
            data = data.replace(b, REDACTED.encode())
    return data
