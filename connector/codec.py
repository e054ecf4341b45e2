"""Avro encoding of the connector's records, from the ``.avsc`` files in ``avro/``.

Two wire formats, both standard so any Avro library can decode with the ``.avsc`` alone:

* default: Avro single-object encoding — ``C3 01``, the schema's 8-byte little-endian
  CRC-64-AVRO fingerprint, then the binary body;
* with a schema registry: Confluent framing — ``00``, the 4-byte big-endian schema id, then the
  body — the schema being registered under ``<topic>-value``.

The registry is reached through python-schema-registry-client (async, httpx; basic auth and a
private CA from the settings). Its failures are sorted by cause here: an outage (unreachable,
5xx, 401/403, 408, 429) is :class:`RegistryUnavailable`, which the worker waits out; an id the
registry does not know is a :class:`DecodeError` of that record.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
import httpx
from fastavro.schema import fingerprint, to_parsing_canonical_form
from schema_registry.client import AsyncSchemaRegistryClient
from schema_registry.client.errors import ClientError

from . import avro_writer

if TYPE_CHECKING:
    from .settings import Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
NAMESPACE = "orderconnector"

QUERY_ORDERS = f"{NAMESPACE}.QueryOrders"
ORDER_EVENT = f"{NAMESPACE}.OrderEvent"
QUERY_RESULT = f"{NAMESPACE}.QueryResult"
ERROR_EVENT = f"{NAMESPACE}.ErrorEvent"
ACCOUNT_STATUS = f"{NAMESPACE}.AccountStatus"  # connector/freshness.py
ORDER_CHANGE = f"{NAMESPACE}.OrderChange"  # connector/changes.py


class DecodeError(ValueError):
    """Bytes that are not a record of a known schema in a known framing."""


class RegistryUnavailable(Exception):
    """The schema registry could not be reached or answered 5xx/429: an outage to wait out.

    Never a verdict on the record itself, so callers retry rather than failing the command.
    """


@dataclass(frozen=True)
class AvroSchema:
    full_name: str
    source: str  # the .avsc text, as registered with a schema registry
    parsed: Any
    fingerprint: bytes  # CRC-64-AVRO of the parsing canonical form, little-endian


def schema_dir() -> Path:
    """Where the ``.avsc`` files are: packaged as ``connector.schemas`` or the repo's ``avro/``."""
    try:
        packaged = Path(str(resources.files("connector.schemas")))
        if any(packaged.glob("*.avsc")):
            return packaged
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "avro"


@cache
def schemas() -> dict[str, AvroSchema]:
    out: dict[str, AvroSchema] = {}
    for path in sorted(schema_dir().glob("*.avsc")):
        source = path.read_text(encoding="utf-8")
        parsed: dict[str, Any] = fastavro.parse_schema(json.loads(source))  # type: ignore[assignment]
        full_name = str(parsed["name"])
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        out[full_name] = AvroSchema(full_name, source, parsed, fp)
    if not out:
        raise RuntimeError(f"no .avsc files found in {schema_dir()}")
    return out


def schema(full_name: str) -> AvroSchema:
    return schemas()[full_name]


@cache
def _by_fingerprint() -> dict[bytes, AvroSchema]:
    return {s.fingerprint: s for s in schemas().values()}


@cache
def _compiled(full_name: str) -> Callable[[dict[str, Any]], bytes] | None:
    return avro_writer.compile_writer(schema(full_name).parsed)


def encode_body(full_name: str, record: dict[str, Any]) -> bytes:
    """Avro binary body: the compiled writer (connector/avro_writer.py, the same bytes at a third
    of the cost), or fastavro for what it does not handle."""
    compiled = _compiled(full_name)
    if compiled is not None:
        try:
            return compiled(record)
        except avro_writer.Fallback:
            pass
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema(full_name).parsed, record)
    return buf.getvalue()


def decode_body(full_name: str, body: bytes) -> dict[str, Any]:
    rec = fastavro.schemaless_reader(io.BytesIO(body), schema(full_name).parsed, None)
    assert isinstance(rec, dict)
    return rec


def encode_single_object(full_name: str, record: dict[str, Any]) -> bytes:
    return SINGLE_OBJECT_MAGIC + schema(full_name).fingerprint + encode_body(full_name, record)


def decode_single_object(data: bytes) -> tuple[str, dict[str, Any]]:
    if not data.startswith(SINGLE_OBJECT_MAGIC) or len(data) < 10:
        raise DecodeError("not Avro single-object encoding")
    s = _by_fingerprint().get(data[2:10])
    if s is None:
        raise DecodeError(f"unknown schema fingerprint {data[2:10].hex()}")
    try:
        return s.full_name, decode_body(s.full_name, data[10:])
    except Exception as exc:  # fastavro raises a variety of errors on corrupt bodies
        raise DecodeError(f"corrupt {s.full_name} body: {type(exc).__name__}") from None


def to_plain(value: Any) -> Any:
    """Decoded record -> JSON-friendly: datetimes back to epoch millis, bytes to text."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode()
    return value


class _SchemaRegistryClient(AsyncSchemaRegistryClient):
    """python-schema-registry-client, plus a CA bundle for the registry's certificate.

    The library uses ``ca_location`` only together with a client certificate; a registry with a
    private CA and no mutual TLS (the common case) needs it on its own.
    """

    def __init__(self, url: str, *, cafile: str | None, **kwargs: Any) -> None:
        self._cafile = cafile
        super().__init__(url, **kwargs)

    def _get_client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._get_client_kwargs()
        if self._cafile:
            kwargs["verify"] = ssl.create_default_context(cafile=self._cafile)
        return kwargs


def _outage_code(code: int | None) -> bool:
    """Registry answers to wait out rather than blame on the record: 5xx, 408, 429, and 401/403
    (wrong or missing registry credentials: the operator's to fix; commands wait meanwhile)."""
    return code is None or code >= 500 or code in (401, 403, 408, 429)


class RegistryClient:
    """The two Confluent Schema Registry calls the connector needs, through
    python-schema-registry-client (async, httpx), with its failures sorted by cause.

    ``user_info`` (``"user:password"``; Confluent Cloud: ``"<api key>:<api secret>"``) is sent
    as HTTP basic auth; ``cafile`` adds a CA bundle for the registry's TLS certificate.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        user_info: str | None = None,
        cafile: str | None = None,
    ) -> None:
        auth: httpx.BasicAuth | None = None
        if user_info:
            user, _, password = user_info.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._client = _SchemaRegistryClient(
            url.rstrip("/"), cafile=cafile, auth=auth, timeout=httpx.Timeout(timeout)
        )
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, str] = {}
        # Successful round trips: proof the registry is up (a cached id proves nothing).
        self.answered = 0

    async def register(self, subject: str, full_name: str) -> int:
        """Schema id for ``full_name`` under ``subject``. Any failure is a RegistryUnavailable:
        without an id nothing can be published, so the caller waits rather than drops."""
        key = (subject, full_name)
        if key not in self._ids:
            try:
                schema_id = int(await self._client.register(subject, schema(full_name).source))
            except (ClientError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                raise RegistryUnavailable(f"registering {subject}: {_why(exc)}") from None
            self.answered += 1
            self._ids[key] = schema_id
            self._by_id[schema_id] = full_name
        return self._ids[key]

    async def name_for_id(self, schema_id: int) -> str:
        """Full name of the record schema with this id. Raises RegistryUnavailable for an
        outage (unreachable, 5xx, 401/403, 408, 429), DecodeError when the registry has no such
        id or answers something that is not an Avro record schema."""
        if schema_id not in self._by_id:
            down = f"looking up schema id {schema_id}"
            try:
                found = await self._client.get_by_id(schema_id)
            except httpx.HTTPError as exc:
                raise RegistryUnavailable(f"{down}: {_why(exc)}") from None
            except ClientError as exc:
                if _outage_code(exc.http_code):
                    raise RegistryUnavailable(f"{down}: {_why(exc)}") from None
                raise DecodeError(f"schema id {schema_id}: {_why(exc)}") from None
            except json.JSONDecodeError as exc:  # not JSON: a proxy's error page, mostly
                raise RegistryUnavailable(f"{down}: {_why(exc)}") from None
            except Exception as exc:  # the library could not parse what the registry sent
                raise DecodeError(f"schema id {schema_id}: {_why(exc)}") from None
            if found is None:
                raise DecodeError(f"schema id {schema_id}: not found in the registry")
            self.answered += 1
            raw = found.raw_schema
            name = raw.get("name") if isinstance(raw, dict) else None
            if not isinstance(name, str):
                raise DecodeError(f"schema id {schema_id}: not an Avro record schema")
            namespace = raw.get("namespace")
            self._by_id[schema_id] = name if "." in name or not namespace else f"{namespace}.{name}"
        return self._by_id[schema_id]

    async def aclose(self) -> None:
        """Nothing to close: the library opens one httpx client per request."""


def _why(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"HTTP {exc.http_code}" if exc.http_code else "ClientError"
    return type(exc).__name__


class Serializer:
    """Encodes records for a topic in the configured wire format."""

    def __init__(
        self,
        registry_url: str | None = None,
        *,
        user_info: str | None = None,
        cafile: str | None = None,
    ) -> None:
        self.registry = (
            RegistryClient(registry_url, user_info=user_info, cafile=cafile)
            if registry_url
            else None
        )

    @property
    def registry_answers(self) -> int:
        """How many registry calls have succeeded so far (0 without a registry)."""
        return self.registry.answered if self.registry is not None else 0

    async def encode(self, topic: str, full_name: str, record: dict[str, Any]) -> bytes:
        if self.registry is None:
            return encode_single_object(full_name, record)
        schema_id = await self.registry.register(f"{topic}-value", full_name)
        return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + encode_body(full_name, record)

    async def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode either framing (the registry is needed for Confluent framing)."""
        if data.startswith(SINGLE_OBJECT_MAGIC):
            return decode_single_object(data)
        if data.startswith(CONFLUENT_MAGIC) and len(data) >= 5:
            if self.registry is None:
                raise DecodeError("Confluent-framed record but no schema registry is configured")
            (schema_id,) = struct.unpack(">I", data[1:5])
            full_name = await self.registry.name_for_id(schema_id)  # or an outage / DecodeError
            if full_name not in schemas():
                raise DecodeError(f"schema id {schema_id} is {full_name}, not a connector schema")
            try:
                return full_name, decode_body(full_name, data[5:])
            except Exception as exc:
                raise DecodeError(f"corrupt {full_name} body: {type(exc).__name__}") from None
        raise DecodeError("neither Avro single-object nor Confluent framing")

    async def aclose(self) -> None:
        if self.registry is not None:
            await self.registry.aclose()


def serializer_for(settings: Settings) -> Serializer:
    """The :class:`Serializer` the settings describe (registry URL, basic auth, CA bundle)."""
    user_info = settings.schema_registry_basic_auth_user_info
    return Serializer(
        settings.schema_registry_url,
        user_info=user_info.get_secret_value() if user_info else None,
        cafile=settings.schema_registry_ssl_cafile,
    )
