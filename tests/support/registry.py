"""A small Confluent Schema Registry stand-in: the REST calls the connector and its consumers use.

Implements ``POST /subjects/{subject}/versions`` (idempotent: the same schema gets the same id),
``POST /subjects/{subject}`` (is this schema registered under the subject?),
``GET /schemas/ids/{id}``, ``GET /subjects``, ``GET /subjects/{subject}/versions`` and
``GET /subjects/{subject}/versions/latest``, with the registry's error bodies. With ``user_info`` ("user:password") every request needs that
HTTP basic auth, as hosted registries (Confluent Cloud) require; others get 401.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CT = "application/vnd.schemaregistry.v1+json"


@dataclass
class RegistryState:
    schemas: list[str] = field(default_factory=list)  # id - 1 -> canonical schema text
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> schema ids
    registrations: int = 0


STATE = web.AppKey("state", RegistryState)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"error_code": code, "message": message}, status=status, content_type=CT
    )


def create_registry_app(
    state: RegistryState | None = None, user_info: str | None = None
) -> web.Application:
    """``state`` survives a restart (as a real registry's storage does) when passed in again."""
    expected = "Basic " + base64.b64encode(user_info.encode()).decode() if user_info else None

    @web.middleware
    async def basic_auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if expected is not None and request.headers.get("Authorization") != expected:
            return _error(401, 401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[basic_auth])
    state = state if state is not None else RegistryState()
    app[STATE] = state

    async def register(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        try:
            body = await request.json()
            text = json.dumps(json.loads(body["schema"]), sort_keys=True, separators=(",", ":"))
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Input schema is an invalid Avro schema")
        if body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, "Only AVRO is supported by this stand-in")
        state.registrations += 1
        if text not in state.schemas:
            state.schemas.append(text)
        schema_id = state.schemas.index(text) + 1
        versions = state.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return web.json_response({"id": schema_id}, content_type=CT)

    async def lookup(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        try:
            body = await request.json()
            text = json.dumps(json.loads(body["schema"]), sort_keys=True, separators=(",", ":"))
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Input schema is an invalid Avro schema")
        ids = state.subjects.get(subject)
        if ids is None:
            return _error(404, 40401, "Subject not found.")
        schema_id = state.schemas.index(text) + 1 if text in state.schemas else None
        if schema_id not in ids:
            return _error(404, 40403, "Schema not found")
        body = {"subject": subject, "id": schema_id, "version": ids.index(schema_id) + 1,
                "schema": text}  # fmt: skip
        return web.json_response(body, content_type=CT)

    async def by_id(request: web.Request) -> web.Response:
        schema_id = int(request.match_info["id"])
        if not 1 <= schema_id <= len(state.schemas):
            return _error(404, 40403, "Schema not found")
        return web.json_response({"schema": state.schemas[schema_id - 1]}, content_type=CT)

    async def subjects(request: web.Request) -> web.Response:
        return web.json_response(sorted(state.subjects), content_type=CT)

    async def versions(request: web.Request) -> web.Response:
        ids = state.subjects.get(request.match_info["subject"])
        if ids is None:
            return _error(404, 40401, "Subject not found.")
        return web.json_response(list(range(1, len(ids) + 1)), content_type=CT)

    async def latest(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        ids = state.subjects.get(subject)
        if not ids:
            return _error(404, 40401, "Subject not found.")
        return web.json_response(
            {
                "subject": subject,
                "version": len(ids),
                "id": ids[-1],
                "schema": state.schemas[ids[-1] - 1],
            },
            content_type=CT,
        )

    app.router.add_post("/subjects/{subject}/versions", register)
    app.router.add_post("/subjects/{subject}", lookup)
    app.router.add_get("/schemas/ids/{id}", by_id)
    app.router.add_get("/subjects", subjects)
    app.router.add_get("/subjects/{subject}/versions", versions)
    app.router.add_get("/subjects/{subject}/versions/latest", latest)
    return app


async def start_registry(
    host: str = "127.0.0.1",
    port: int = 0,
    state: RegistryState | None = None,
    *,
    user_info: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str, RegistryState]:
    """Serve the stand-in; stop it with ``runner.cleanup()`` (the port then refuses connections)
    and start it again on the same ``port`` with the same ``state``. With ``ssl_context`` it
    serves HTTPS."""
    app = create_registry_app(state, user_info)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://{host}:{port}", app[STATE]
