"""Runs every registered venue's simulator and announces where they are."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web


@dataclass
class Sandbox:
    """Running simulators: their base URLs and the accounts file that matches them."""

    env: dict[str, str]
    runners: list[web.AppRunner] = field(default_factory=list)
    apps: dict[str, web.Application] = field(default_factory=dict)

    def env_line(self) -> str:
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1]


async def start_sandbox(
    *,
    host: str = "127.0.0.1",
    public_host: str | None = None,
    ports: Mapping[str, int] | None = None,
    workdir: str | None = None,
    orders_file: str | None = None,
) -> Sandbox:
    """Start every registered venue's simulator (port 0 = any free port) and write the demo
    accounts file. ``ports`` maps venue name -> port."""
    from ..errors import ConfigurationError
    from ..exchanges import registry

    ports = dict(ports or {})
    venues = registry.venues()
    unknown = sorted(set(ports) - set(venues))
    if unknown:
        raise ConfigurationError(f"--port: no venue named {', '.join(unknown)}")
    public = public_host or host
    directory = Path(workdir or tempfile.mkdtemp(prefix="connector-sandbox-"))
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    accounts: dict[str, Any] = {}
    sandbox = Sandbox(env={})
    for name, venue in venues.items():
        if venue.simulator is None:
            continue
        simulator = venue.simulator()
        app = simulator.create_app(orders_file)
        runner, bound = await _serve(app, host, ports.get(name, 0))
        sandbox.runners.append(runner)
        sandbox.apps[name] = app
        entries = (
            simulator.app_accounts(app) if simulator.app_accounts else simulator.demo_accounts()
        )
        accounts.update({alias: dict(entry) for alias, entry in entries.items()})
        sandbox.env.update(simulator.env(f"http://{public}:{bound}"))
    accounts_file = directory / "accounts.yaml"
    accounts_file.write_text(yaml.safe_dump({"accounts": accounts}, sort_keys=True))
    accounts_file.chmod(0o600)
    sandbox.env["CONNECTOR_ACCOUNTS_FILE"] = str(accounts_file)
    plugins = os.environ.get(registry.PLUGINS_ENV)
    if plugins:  # the worker must load the same plugin venues the sandbox serves
        sandbox.env[registry.PLUGINS_ENV] = plugins
    return sandbox


async def run_forever(**kwargs: Any) -> None:
    """The ``connector sandbox`` command: start, print the env line first, serve until stopped."""
    sandbox = await start_sandbox(**kwargs)
    print(sandbox.env_line(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
