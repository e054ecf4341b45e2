"""Confluent wire format with schema registration, against the registry stand-in."""

from __future__ import annotations

import io
import json
import ssl
import struct
import subprocess
from pathlib import Path

import avro.io
import avro.schema
import httpx
import pytest

from connector import codec
from tests.support.registry import start_registry


async def test_confluent_framing_registers_under_topic_value_subject() -> None:
    runner, url, state = await start_registry()
    serializer = codec.Serializer(url)
    try:
        record = {
            "request_id": "r", "exchange": "ascendex", "account": "a", "symbol": None, "status": "OK",
            "order_count": 2, "error_code": None, "requested_at": None, "started_at": 1,
            "completed_at": 2, "exchange_calls": 1,
        }  # fmt: skip
        first = await serializer.encode("order-query-results", codec.QUERY_RESULT, record)
        second = await serializer.encode("order-query-results", codec.QUERY_RESULT, record)
        assert first[:1] == b"\x00"
        (schema_id,) = struct.unpack(">I", first[1:5])
        assert first == second
        assert state.registrations == 1  # cached after the first registration
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/subjects")).json() == ["order-query-results-value"]
            latest = (await http.get("/subjects/order-query-results-value/versions/latest")).json()
            assert latest["id"] == schema_id
            # A consumer that knows only the registry decodes it with another Avro library.
            writer = avro.schema.parse(
                (await http.get(f"/schemas/ids/{schema_id}")).json()["schema"]
            )
        decoded = avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(first[5:])))
        assert decoded["order_count"] == 2 and decoded["status"] == "OK"
        # ...and the connector's own decoder resolves the id through the registry.
        fresh = codec.Serializer(url)
        name, rec = await fresh.decode(first)
        await fresh.aclose()
        assert name == codec.QUERY_RESULT and rec["exchange_calls"] == 1
    finally:
        await serializer.aclose()
        await runner.cleanup()


async def test_different_schemas_get_different_ids() -> None:
    runner, url, _ = await start_registry()
    serializer = codec.Serializer(url)
    try:
        a = await serializer.registry.register("t-value", codec.ORDER_EVENT)  # type: ignore[union-attr]
        b = await serializer.registry.register("t-value", codec.ERROR_EVENT)  # type: ignore[union-attr]
        assert a != b
        source = json.loads(codec.schema(codec.ORDER_EVENT).source)
        assert source["name"] == "OrderEvent"
    finally:
        await serializer.aclose()
        await runner.cleanup()


RESULT = {
    "request_id": "r", "exchange": "ascendex", "account": "a", "symbol": None, "status": "OK",
    "order_count": 0, "error_code": None, "requested_at": None, "started_at": 1,
    "completed_at": 2, "exchange_calls": 1,
}  # fmt: skip


async def test_basic_auth_user_info_is_sent_and_required() -> None:
    runner, url, state = await start_registry(user_info="svc:s3cret:with-colon")
    right = codec.Serializer(url, user_info="svc:s3cret:with-colon")
    wrong = codec.Serializer(url, user_info="svc:nope")
    anonymous = codec.Serializer(url)
    try:
        framed = await right.encode("results", codec.QUERY_RESULT, RESULT)
        assert state.subjects == {"results-value": [1]}
        name, _ = await codec.Serializer(url, user_info="svc:s3cret:with-colon").decode(framed)
        assert name == codec.QUERY_RESULT
        for refused in (wrong, anonymous):
            with pytest.raises(codec.RegistryUnavailable, match="HTTP 401"):
                await refused.encode("results", codec.QUERY_RESULT, RESULT)
            # Bad credentials are the operator's to fix: commands wait, none is failed for it.
            with pytest.raises(codec.RegistryUnavailable, match="HTTP 401"):
                await refused.decode(framed)
    finally:
        await runner.cleanup()


async def test_unknown_schema_id_is_a_decode_error_and_a_stopped_registry_an_outage() -> None:
    runner, url, _ = await start_registry()
    serializer = codec.Serializer(url)
    with pytest.raises(codec.DecodeError, match="not found"):
        await serializer.decode(b"\x00" + struct.pack(">I", 99) + b"\x02")
    await runner.cleanup()  # connections are refused from now on
    with pytest.raises(codec.RegistryUnavailable, match="ConnectError"):
        await serializer.encode("results", codec.QUERY_RESULT, RESULT)
    with pytest.raises(codec.RegistryUnavailable, match="ConnectError"):
        await serializer.decode(b"\x00" + struct.pack(">I", 1) + b"\x02")


def _make_tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA and a certificate for 127.0.0.1 signed by it (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return tmp_path / "ca.pem", ctx


async def test_tls_registry_with_a_private_ca(tmp_path: Path) -> None:
    cafile, server_ctx = _make_tls(tmp_path)
    runner, url, state = await start_registry(ssl_context=server_ctx)
    try:
        assert url.startswith("https://")
        trusting = codec.Serializer(url, cafile=str(cafile))
        framed = await trusting.encode("results", codec.QUERY_RESULT, RESULT)
        assert framed[:1] == b"\x00" and state.registrations == 1
        # Without the CA the certificate is not trusted: an outage to wait out, loudly logged.
        with pytest.raises(codec.RegistryUnavailable, match="ConnectError"):
            await codec.Serializer(url).encode("results", codec.QUERY_RESULT, RESULT)
    finally:
        await runner.cleanup()


def test_serializer_for_reads_the_registry_settings(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from connector.settings import Settings

    serializer = codec.serializer_for(
        Settings(
            schema_registry_url="https://registry.invalid/",
            schema_registry_basic_auth_user_info=SecretStr("key:secret"),
        )
    )
    assert serializer.registry is not None
    assert "secret" not in repr(
        Settings(schema_registry_basic_auth_user_info=SecretStr("k:secret"))
    )
    assert codec.serializer_for(Settings()).registry is None
