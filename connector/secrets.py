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


REDACTED = "***"
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


class SecretRegistry:
    """The secret values registered so far, and the matchers built over them.

    One process-wide instance, :data:`REGISTRY`, is what the module's functions use; a copy
    (:meth:`copy`) is an independent registry with the same secrets (a test that registers
    secrets of its own swaps one in and out, instead of reaching into the module's state).
    """

    def __init__(self, values: frozenset[str] = frozenset()) -> None:
        self._lock = threading.Lock()
        self.values: frozenset[str] = frozenset()
        # Longest first, so a secret containing another is replaced whole. Rebuilt on
        # registration (start-up) rather than sorted on every log line.
        self.ordered: tuple[tuple[str, bytes], ...] = ()
        self.automaton: AhoCorasick | None = None  # over the values; None while there are none
        self.bytes_automaton: BytesAhoCorasick | None = None  # the same over their UTF-8 bytes
        # Whether every secret reads the same inside a JSON string: none holds a character
        # JSON escapes (quote, backslash, control characters). See secrets_survive_json.
        self.json_safe = True
        self._rebuild(values)

    def register(self, *secrets: Secret | None) -> None:
        """Called at start-up by whoever loads credentials (the accounts file, the settings):
        remembers their values, so every redaction and scan from then on covers them."""
        with self._lock:
            # Very short values would redact ordinary text; real credentials are long.
            added = {s.reveal() for s in secrets if s is not None and len(s.reveal()) >= 4}
            if not added <= self.values:
                self._rebuild(self.values | added)

    def copy(self) -> SecretRegistry:
        return SecretRegistry(self.values)

    def _rebuild(self, values: frozenset[str]) -> None:
        ordered = tuple((s, s.encode()) for s in sorted(values, key=len, reverse=True))
        self.automaton = (
            AhoCorasick(list(values), implementation=Implementation.DFA) if values else None
        )
        self.bytes_automaton = (
            BytesAhoCorasick([b for _, b in ordered], implementation=Implementation.DFA)
            if values
            else None
        )
        self.json_safe = not any(_JSON_ESCAPED.search(s) for s in values)
        self.ordered = ordered
        self.values = values


REGISTRY = SecretRegistry()
"""The process-wide registry behind :func:`register_secrets`, :func:`redact` and the scans."""


def register_secrets(*secrets: Secret | None) -> None:
    """Remember secret values so :func:`redact` can scrub them from any output."""
    REGISTRY.register(*secrets)


def redact(text: str) -> str:
    """Replace every registered secret value in ``text``."""
    for s, _ in REGISTRY.ordered:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def secrets_survive_json() -> bool:
    """True when no secret holds a character a JSON encoder escapes (``"``, ``\\``, U+0000 to
    U+001F). JSON escaping maps each character on its own, so then any string holding a secret
    still holds it verbatim once JSON-encoded, and :func:`contains_secret` may scan the JSON
    of a whole record at once (connector/pipeline.py)."""
    return REGISTRY.json_safe


def contains_secret(text: str) -> bool:
    """Whether :func:`redact` would change ``text``: one Aho-Corasick pass (Rust, ahocorasick-rs)
    over ``text`` for all secrets at once. A worker with many accounts holds many secrets and
    every outgoing record is checked; one ``in`` per secret was the worker's top cost (py-spy,
    ``make bench``), ten times this. Any occurrence yields at least one match."""
    automaton = REGISTRY.automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(text))


def contains_secret_utf8(data: bytes) -> bool:
    """:func:`contains_secret` for UTF-8 ``data``, without decoding it (a third cheaper per
    character). The same answer as on the decoded text: a secret's UTF-8 starts with a lead
    byte, so its bytes can only match at a character boundary of valid UTF-8."""
    automaton = REGISTRY.bytes_automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(data))


def redact_bytes(data: bytes) -> bytes:
    for _, b in REGISTRY.ordered:
        if b in data:
            data = data.replace(b, REDACTED.encode())
    return data
