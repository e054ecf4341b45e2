"""No input can crash the pipeline: property-based fuzzing of command decoding, plus the limits
(size, depth, NaN, lone surrogates), the echo truncation, secret redaction everywhere, stale
commands and registry outages while decoding."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import codec
from connector.account import Account, Accounts
from connector.codec import RegistryUnavailable
from connector.commands import json_depth_exceeds, safe_text
from connector.errors import ErrorCode
from connector.model import FetchResult
from connector.pipeline import Outcome, Pipeline
from connector.secrets import Secret
from connector.settings import Settings
from connector.worker.outages import is_outage

from .test_pipeline import SECRET, FakeAdapter, cmd, order

CALLER_SECRET = "key-abcdef-caller-pasted"


def make_pipeline(adapter: FakeAdapter | None = None, **overrides: Any) -> Pipeline:
    accounts = Accounts([Account("desk", "ascendex", Secret(CALLER_SECRET), Secret(SECRET))])
    return Pipeline(
        Settings(**overrides),
        accounts,
        {"ascendex": adapter or FakeAdapter(FetchResult([order(1)], calls=1))},
        codec.Serializer(),
    )


def publishable(out: Outcome) -> None:
    """What the worker does with an outcome: Avro-encode every value, UTF-8 every key/header."""
    records = out.records()
    assert records[-1].schema == codec.QUERY_RESULT
    assert sum(r.schema == codec.QUERY_RESULT for r in records) == 1
    for rec in records:
        codec.encode_single_object(rec.schema, rec.value)
        if rec.key is not None:
            rec.key.encode("utf-8")
        for k, v in rec.headers.items():
            k.encode("utf-8")
            v.encode("utf-8")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
command_like = st.fixed_dictionaries(
    {},
    optional={
        "request_id": json_values,
        "exchange": st.sampled_from(["ascendex", "ASCENDEX", "bitget", "kraken", ""]) | json_values,
        "account": st.sampled_from(["desk", "nobody", CALLER_SECRET]) | json_values,
        "symbol": json_values,
        "product_type": json_values,
        "trader_id": json_values,
        "requested_at": json_values,
        "deadline_ms": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | command_like.map(lambda d: json.dumps(d).encode()))
async def test_any_bytes_end_in_exactly_one_publishable_result(value: bytes) -> None:
    out = await make_pipeline().process(value)
    publishable(out)
    if not out.ok:
        assert out.error is not None and out.result is not None
        assert out.error.value["code"] != ErrorCode.INTERNAL.value, out.error.value["message"]


@settings(max_examples=200, deadline=None)
@given(command_like)
async def test_json_with_escaped_text_never_escapes_encoding(fields: dict[str, Any]) -> None:
    # ensure_ascii=True writes every non-ASCII character (lone surrogates included) as \\uXXXX
    out = await make_pipeline().process(json.dumps(fields, ensure_ascii=True).encode())
    publishable(out)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "over the limit"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nests deeper than 32"),
        (b"[" * 33 + b"]" * 33, "nests deeper than 32"),
        (cmd(deadline_ms=float("nan")), "NaN"),
        (b'{"request_id": "r", "x": ' + b"9" * 5000 + b"}", "malformed JSON"),
        (
            b'{"request_id": "\\ud800", "exchange": "ascendex", "account": "desk"}',
            "not valid Unicode",
        ),
        (b"[]", "must be an object"),
        (b"\xc3\x01" + codec.schema(codec.QUERY_ORDERS).fingerprint + b"\x02", "corrupt"),
    ],
)
async def test_hostile_inputs_are_invalid_command(value: bytes, match: str) -> None:
    out = await make_pipeline().process(value)
    publishable(out)
    assert out.error is not None
    assert out.error.value["code"] == "INVALID_COMMAND"
    assert match in out.error.value["message"]


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    assert not json_depth_exceeds(b'{"a": "[[[[[[\\"[[[["}', 1)
    assert json_depth_exceeds(b'{"a": [[1]]}', 2)
    assert not json_depth_exceeds(b'{"a": [[1]]}', 3)


async def test_lone_surrogate_request_id_is_escaped_in_every_output() -> None:
    out = await make_pipeline().process(
        b'{"request_id": "a\\udc80b", "exchange": "ascendex", "account": "desk"}'
    )
    publishable(out)
    assert out.request_id == "a\\udc80b"
    assert out.result is not None and out.result.headers["request_id"] == "a\\udc80b"
    assert safe_text("ok") == "ok"


async def test_echo_is_truncated_and_the_original_size_recorded() -> None:
    big = cmd(request_id="big", account="nobody", junk="x" * 50_000)  # under 64 KiB
    out = await make_pipeline(error_command_max_bytes=1000).process(big)
    publishable(out)
    assert out.error is not None
    assert out.error.value["code"] == "UNKNOWN_ACCOUNT"
    assert len(out.error.value["command"]) == 1000
    assert out.error.value["command_size"] == len(big)


async def test_oversized_command_is_refused_and_echo_bounded() -> None:
    huge = cmd(junk="y" * 1_000_000)
    out = await make_pipeline().process(huge)
    publishable(out)
    assert out.error is not None
    assert "over the limit of 65536" in out.error.value["message"]
    assert len(out.error.value["command"]) == 16_384
    assert out.error.value["command_size"] == len(huge)


async def test_secret_sent_by_a_caller_is_redacted_in_keys_headers_values() -> None:
    for field in ("request_id", "account", "symbol"):
        value = cmd(**{field: f"x{CALLER_SECRET}y"})
        out = await make_pipeline().process(value)
        publishable(out)
        for rec in out.records():
            blob = json.dumps([rec.key, rec.headers, codec.to_plain(rec.value)])
            assert CALLER_SECRET not in blob, (field, rec.role)
        assert CALLER_SECRET not in out.request_id + out.account


async def test_stale_command_is_expired_without_querying() -> None:
    adapter = FakeAdapter()
    p = make_pipeline(adapter, command_max_age_s=60)
    old = int(time.time() * 1000) - 120_000
    out = await p.process(cmd(), timestamp_ms=old)
    publishable(out)
    assert out.error is not None and out.error.value["code"] == "EXPIRED"
    assert adapter.calls == []
    fresh = await p.process(cmd(), timestamp_ms=int(time.time() * 1000))
    assert fresh.ok and len(adapter.calls) == 1
    unlimited = make_pipeline(adapter, command_max_age_s=0)
    assert (await unlimited.process(cmd(), timestamp_ms=old)).ok


async def test_registry_outage_while_decoding_is_raised_not_answered() -> None:
    # Nothing listens on port 9 (discard): connection refused, i.e. the registry is down.
    serializer = codec.Serializer("http://127.0.0.1:9")
    p = Pipeline(Settings(), Accounts([]), {}, serializer)
    framed = b"\x00\x00\x00\x00\x07" + b"body"
    with pytest.raises(RegistryUnavailable):
        await p.process(framed)
    with pytest.raises(RegistryUnavailable):
        await serializer.encode("t", codec.QUERY_RESULT, {})
    await serializer.aclose()


def test_outage_classification() -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
    from faust.exceptions import ProducerSendError

    def wrapped(exc: BaseException) -> ProducerSendError:
        try:
            raise ProducerSendError("send") from exc
        except ProducerSendError as e:
            return e

    assert is_outage(KafkaConnectionError())
    assert is_outage(wrapped(KafkaConnectionError()))
    assert is_outage(RegistryUnavailable("down"))
    assert is_outage(httpx.ConnectError("refused"))
    assert is_outage(TimeoutError())
    assert not is_outage(MessageSizeTooLargeError())
    assert not is_outage(wrapped(MessageSizeTooLargeError()))
    assert not is_outage(ValueError("bad record"))
