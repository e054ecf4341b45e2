"""Avro encoding of the connector's records, from the ``.avsc`` files in ``avro/``.

Two wire formats, both standard so any Avro library can decode with the ``.avsc`` alone:

* default: Avro single-object encoding — ``C3 01``, the schema's 8-byte little-endian
  CRC-64-AVRO fingerprint, then the binary body;
* with a schema registry: Confluent framing — ``00``, the 4-byte big-endian schema id, then the
  body — the schema being registered under ``<topic>-value``.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import struct
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
import httpx
from fastavro.schema import fingerprint, to_parsing_canonical_form

if TYPE_CHECKING:
    from .settings import Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
NAMESPACE = "orderconnector"

QUERY_ORDERS = f"{NAMESPACE}.QueryOrders"
ORDER_EVENT = f"{NAMESPACE}.OrderEvent"
QUERY_RESULT = f"{NAMESPACE}.QueryResult"
ERROR_EVENT = f"{NAMESPACE}.ErrorEvent"


class DecodeError(ValueError):
    """Bytes that are not a record of a known schema in a known framing."""


class RegistryUnavailable(Exception):
    """The schema registry could not be reached or answered 5xx/429: an outage to wait out.

    Never a verdict on the record itself, so callers retry rather than failing the command.
    """


def _registry_outage(exc: httpx.HTTPError) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status >= 500 or status in (408, 429)
    return True  # transport errors: refused, reset, timeouts


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


def encode_body(full_name: str, record: dict[str, Any]) -> bytes:
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


class RegistryClient:
    """The few Confluent Schema Registry REST calls the connector needs.

    ``user_info`` (``"user:password"``) is sent as HTTP basic auth, as Confluent Cloud and most
    hosted registries require; ``cafile`` adds a CA bundle for the registry's TLS certificate.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        user_info: str | None = None,
        cafile: str | None = None,
    ) -> None:
        auth: tuple[str, str] | None = None
        if user_info:
            user, _, password = user_info.partition(":")
            auth = (user, password)
        verify: ssl.SSLContext | bool = True
        if cafile:
            verify = ssl.create_default_context(cafile=cafile)
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), timeout=timeout, auth=auth, verify=verify
        )
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, str] = {}
        # Successful round trips: proof the registry is up (a cached id proves nothing).
        self.answered = 0

    async def register(self, subject: str, full_name: str) -> int:
        """Schema id for ``full_name`` under ``subject``. Any failure is a RegistryUnavailable:
        without an id nothing can be published, so the caller waits rather than drops."""
        try:
            return await self._register(subject, full_name)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise RegistryUnavailable(f"registering {subject}: {type(exc).__name__}") from None

    async def _register(self, subject: str, full_name: str) -> int:
        key = (subject, full_name)
        if key not in self._ids:
            resp = await self._client.post(
                f"/subjects/{subject}/versions",
                json={"schema": schema(full_name).source, "schemaType": "AVRO"},
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            )
            resp.raise_for_status()
            schema_id = int(resp.json()["id"])
            self.answered += 1
            self._ids[key] = schema_id
            self._by_id[schema_id] = full_name
        return self._ids[key]

    async def name_for_id(self, schema_id: int) -> str:
        if schema_id not in self._by_id:
            resp = await self._client.get(f"/schemas/ids/{schema_id}")
            resp.raise_for_status()
            self.answered += 1
            parsed: dict[str, Any] = fastavro.parse_schema(json.loads(resp.json()["schema"]))  # type: ignore[assignment]
            self._by_id[schema_id] = str(parsed["name"])
        return self._by_id[schema_id]

    async def aclose(self) -> None:
        await self._client.aclose()


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
            try:
                full_name = await self.registry.name_for_id(schema_id)
            except httpx.HTTPError as exc:
                if _registry_outage(exc):
                    raise RegistryUnavailable(
                        f"looking up schema id {schema_id}: {type(exc).__name__}"
                    ) from None
                raise DecodeError(f"schema id {schema_id}: {type(exc).__name__}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise DecodeError(f"schema id {schema_id}: {type(exc).__name__}") from None
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
