"""Runs every exchange simulator and announces where they are."""

from __future__ import annotations

import asyncio
import shlex
import signal
import tempfile
from collections.abc import Callable
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
    ascendex_port: int = 0,
    bitget_port: int = 0,
    workdir: str | None = None,
    orders_file: str | None = None,
) -> Sandbox:
    """Start the simulators (port 0 = any free port) and write the demo accounts file."""
    from . import ascendex

    simulators: list[tuple[str, int, Callable[..., web.Application], Any]] = [
        ("ascendex", ascendex_port, ascendex.create_app, ascendex.demo_accounts),
    ]
    try:
        from . import bitget
    except ImportError:  # pragma: no cover - until the Bitget simulator lands
        pass
    else:
        simulators.append(("bitget", bitget_port, bitget.create_app, bitget.demo_accounts))

    public = public_host or host
    directory = Path(workdir or tempfile.mkdtemp(prefix="connector-sandbox-"))
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    accounts: dict[str, Any] = {}
    sandbox = Sandbox(env={})
    for name, port, create_app, demo_accounts in simulators:
        app = create_app(orders_file=orders_file)
        runner, bound = await _serve(app, host, port)
        sandbox.runners.append(runner)
        sandbox.apps[name] = app
        accounts.update(demo_accounts())
        if name == "ascendex":
            sandbox.env["CONNECTOR_ASCENDEX_REST_URL"] = f"http://{public}:{bound}"
            sandbox.env["CONNECTOR_ASCENDEX_WS_URL"] = f"ws://{public}:{bound}"
        else:
            sandbox.env[f"CONNECTOR_{name.upper()}_REST_URL"] = f"http://{public}:{bound}"
    accounts_file = directory / "accounts.yaml"
    accounts_file.write_text(yaml.safe_dump({"accounts": accounts}, sort_keys=True))
    accounts_file.chmod(0o600)
    sandbox.env["CONNECTOR_ACCOUNTS_FILE"] = str(accounts_file)
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
