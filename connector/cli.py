"""The ``connector`` command line (README "Command line"), built with click.

Every mistake an operator can make ends in one line on stderr and a non-zero exit, never a
traceback: bad or missing settings (exit 2, naming every bad ``CONNECTOR_*`` variable, never a
value that may be secret), a port already in use (exit 2), no broker for ``query``/``tail``/
``state`` (exit 3). Each subcommand's ``--help`` lists the ``CONNECTOR_*`` variables it reads,
with their defaults, from the settings models themselves so the list cannot go stale.

Output is for whoever reads it: ``query``, ``tail`` and ``state`` print one readable summary line
per record on a terminal and JSON lines into a pipe or file (``--format`` always wins), and a
reader that stops early (``| head``) ends the command quietly with exit 0, as Unix tools do.

Exit codes: 0 done (``query --wait``: OK; also when the reader of stdout went away); 1
``query --wait`` FAILED, or ``tail`` of a topic that does not exist; 2 configuration or usage
error, or ``query --wait`` timed out; 3 broker unreachable; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import click

from .errors import ConfigurationError
from .settings import ENV_PREFIX, Settings
from .settings_env import load_settings, unknown_variables
from .version import __version__

log = logging.getLogger("connector.cli")

EXIT_CONFIG = 2
EXIT_BROKER = 3

KAFKA = (
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_fetch_max_wait_ms",
)
LOGS = ("log_level", "log_format")
OUTPUT_TOPICS = ("topic_orders", "topic_results", "topic_errors")
ALL_TOPICS = ("topic_query_orders", *OUTPUT_TOPICS, "topic_state")


def _env_help(fields: Sequence[str] | None, *, venues: bool = False) -> str:
    """The ``CONNECTOR_*`` variables a subcommand reads, with defaults (None: all core ones)."""
    from .exchanges.registry import PLUGINS_ENV

    names = list(Settings.model_fields) if fields is None else list(fields)
    lines = ["\b", "Environment (default):"]
    for name in names:
        default = Settings.model_fields[name].default
        lines.append(f"  {ENV_PREFIX}{name.upper()} ({'unset' if default is None else default})")
    if venues:
        try:
            from .exchanges.registry import VenueControls
            from .exchanges.registry import venues as registered

            for venue in registered().values():
                prefix = venue.env_prefix
                venue_fields = {**VenueControls.model_fields, **venue.settings.model_fields}
                for name, info in venue_fields.items():
                    lines.append(f"  {prefix}{name.upper()} ({info.default})")
        except ConfigurationError:
            pass
        lines.append(f"  {PLUGINS_ENV} (unset): extra venue modules, comma-separated")
    return "\n".join(lines)


class VenueChoice(click.ParamType):
    """``--exchange``: one of the registered venues (read when used, not at import)."""

    name = "venue"

    def _names(self) -> list[str]:
        from .exchanges.registry import names

        try:
            return names()
        except ConfigurationError:
            return []

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self._names()) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        choices = self._names()
        if text not in choices:
            self.fail(f"{value!r} is not one of {', '.join(choices)}", param, ctx)
        return text


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``500ms``, ``2d`` or plain seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 500ms, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class Duration(click.ParamType):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: ``--connect-timeout`` of the commands that talk to the broker (query, tail, state); the default
#: is ``connector.client.CONNECT_TIMEOUT_S`` (not imported here: the client pulls in aiokafka).
connect_timeout_option = click.option(
    "--connect-timeout",
    type=Duration(),
    default=10.0,
    show_default=True,
    help="how long to wait for the broker (exit 3 after)",
)


def _venue_port(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, int]:
    ports = {}
    for text in values:
        name, sep, port = text.partition("=")
        if not sep or not name or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise click.BadParameter(f"expected VENUE=PORT, got {text!r}")
        ports[name.strip().lower()] = int(port)
    return ports


def _settings(level: str | None = None) -> Settings:
    """Load and validate every setting, set up logging, warn about unknown variables."""
    from .kafka import ssl_context
    from .logs import setup

    settings = load_settings()
    ssl_context(settings)  # a TLS file that cannot be loaded is one line now, not at connect
    setup(level or settings.log_level, settings.log_format)
    for name in unknown_variables():
        log.warning("unknown setting %s ignored", name)
    return settings


FORMATS = ("jsonl", "summary")


def output_format(fmt: str | None, out: TextIO) -> str:
    """The ``--format`` given, else ``summary`` for a person at a terminal and ``jsonl`` for a
    program reading a pipe or a file (a terminal has no use for the ``raw`` JSON of each order,
    a script has no use for aligned text)."""
    if fmt is not None:
        return fmt
    try:
        return "summary" if out.isatty() else "jsonl"
    except ValueError:  # a closed stream
        return "jsonl"


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="jsonl: one JSON object per record; summary: one readable line per record "
    "[default: summary on a terminal, jsonl otherwise]",
)


def _stdout_gone() -> None:
    """The reader closed stdout: point it at /dev/null so the interpreter's last flush of what
    is still buffered cannot fail ("Exception ignored ... BrokenPipeError") at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _run(coro: Any) -> int:
    from aiokafka.errors import KafkaError

    from .client import BrokerUnreachable, OutputClosed

    try:
        return int(asyncio.run(coro))
    except OutputClosed:  # ``| head``: the reader has what it wanted
        _stdout_gone()
        return 0
    except BrokerUnreachable as exc:
        click.echo(f"connector: {exc}", err=True)
        return EXIT_BROKER
    except (KafkaError, OSError) as exc:  # answered the port check, then failed: still one line
        click.echo(f"connector: CONNECTOR_KAFKA_BOOTSTRAP: {type(exc).__name__}: {exc}", err=True)
        return EXIT_BROKER


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Configuration comes from CONNECTOR_* environment variables; each command's --help "
    "lists the ones it reads. Exit codes: 0 ok, 1 FAILED result, 2 configuration/usage error "
    "or timeout, 3 broker unreachable.",
)
@click.version_option(__version__, "-V", "--version", prog_name="connector")
def cli() -> None:
    """Exchange order connector: query-orders commands in, Avro order snapshots out."""


@cli.command(epilog=_env_help(None, venues=True))
def worker() -> None:
    """Run the Faust worker (needs CONNECTOR_ACCOUNTS_FILE).

    A broker absent at start is waited for, with one log line when waiting starts and one when
    it answers, /healthz 200 and /readyz 503 meanwhile. Input/output topics missing on the
    broker, or the web port already in use, end the worker with one line (exit 2).
    """
    settings = _settings()
    from .worker import run_worker

    run_worker(settings)


@cli.command(epilog=_env_help((*KAFKA[:1], *ALL_TOPICS, "topic_partitions", *LOGS)))
def broker() -> None:
    """Run the embedded Kafka-compatible broker on CONNECTOR_KAFKA_BOOTSTRAP (dev/tests) and
    create the topics. A port already in use is one line (exit 2)."""
    settings = _settings()
    from .broker import run_broker

    sys.exit(run_broker(settings))


@cli.command(epilog=_env_help(LOGS, venues=True))
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--public-host", help="host name workers use to reach the simulators (default: --host)"
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    callback=_venue_port,
    metavar="VENUE=PORT",
    help="fixed port for one venue's simulator (repeatable; default: any free port)",
)
@click.option("--workdir", help="where to write accounts.yaml (default: a new temp dir)")
@click.option("--orders-file", help="YAML: account alias -> raw exchange orders")
def sandbox(
    host: str,
    public_host: str | None,
    ports: dict[str, int],
    workdir: str | None,
    orders_file: str | None,
) -> None:
    """Run a local simulator of every registered venue."""
    _settings()
    from .sandbox.server import run_forever

    asyncio.run(
        run_forever(
            host=host,
            public_host=public_host,
            ports=ports,
            workdir=workdir,
            orders_file=orders_file,
        )
    )


@cli.command(
    epilog=_env_help((*KAFKA, "topic_query_orders", *OUTPUT_TOPICS, "schema_registry_url"))
)
@click.option("--exchange", required=True, type=VenueChoice(), help="the venue")
@click.option("--account", required=True, help="account alias from the accounts file")
@click.option("--symbol", help="exchange-native symbol (default: all)")
@click.option(
    "--product-type", help="venue option: product type (the venue's docs list its values)"
)
@click.option("--trader-id", help="venue option: only this trader's orders")
@click.option("--request-id", help="default: a new UUID")
@click.option(
    "--deadline",
    type=Duration(),
    help="relative deadline (30s, 5m, 1h): answered EXPIRED instead of being run after it",
)
@click.option(
    "--deadline-ms",
    type=int,
    help="absolute deadline, UTC epoch milliseconds (default: now + --timeout, so a command "
    "nobody waits for any more is answered EXPIRED instead of being run late)",
)
@click.option("--avro", is_flag=True, help="send the command as Avro, not JSON")
@click.option("--wait", is_flag=True, help="print the outputs; exit 0 OK / 1 FAILED")
@click.option(
    "--timeout",
    type=Duration(),
    default=60.0,
    show_default=True,
    help="seconds to wait for the result (exit 2 after)",
)
@format_option
@connect_timeout_option
def query(
    exchange: str,
    account: str,
    symbol: str | None,
    product_type: str | None,
    trader_id: str | None,
    request_id: str | None,
    deadline: float | None,
    deadline_ms: int | None,
    avro: bool,
    wait: bool,
    timeout: float,
    fmt: str | None,
    connect_timeout: float,
) -> None:
    """Publish one query-orders command; with --wait, print its order events, error and result.

    Exit 0 OK, 1 FAILED, 2 no result within --timeout, 3 broker unreachable.
    """
    if deadline is not None and deadline_ms is not None:
        raise click.UsageError("give --deadline or --deadline-ms, not both")
    settings = _settings("WARNING")
    from .client import build_command
    from .client import query as run_query

    now_ms = int(time.time() * 1000)
    if deadline_ms is None:
        deadline_ms = now_ms + int((deadline if deadline is not None else timeout) * 1000)
    command = build_command(
        exchange=exchange,
        account=account,
        request_id=request_id,
        symbol=symbol,
        product_type=product_type,
        trader_id=trader_id,
        deadline_ms=deadline_ms,
        requested_at=now_ms,
    )
    sys.exit(
        _run(
            run_query(
                settings,
                command,
                wait=wait,
                timeout=timeout,
                avro=avro,
                fmt=output_format(fmt, sys.stdout),
                connect_timeout=connect_timeout,
            )
        )
    )


@cli.command(epilog=_env_help((*KAFKA, *ALL_TOPICS, "schema_registry_url")))
@click.argument("topic", metavar="TOPIC|ROLE")
@click.option("--latest", is_flag=True, help="only new records (default: from the start)")
@click.option("--max-messages", type=int, help="stop after this many records")
@click.option("--idle-timeout", type=Duration(), help="exit after this much silence (e.g. 5s)")
@click.option("--request-id", help="only the records of this request_id")
@format_option
@connect_timeout_option
def tail(
    topic: str,
    latest: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    request_id: str | None,
    fmt: str | None,
    connect_timeout: float,
) -> None:
    """Decode a topic: partition, offset, timestamp, key, headers, schema and value as JSON
    lines, or one summary line per record (the default on a terminal).

    TOPIC is a topic name or a role: orders, results, errors, commands (query-orders, JSON or
    Avro) or state (CONNECTOR_TOPIC_STATE).
    """
    settings = _settings("WARNING")
    from .client import tail as run_tail

    sys.exit(
        _run(
            run_tail(
                settings,
                topic,
                from_beginning=not latest,
                max_messages=max_messages,
                idle_timeout=idle_timeout,
                request_id=request_id,
                fmt=output_format(fmt, sys.stdout),
                connect_timeout=connect_timeout,
            )
        )
    )


@cli.command(epilog=_env_help((*KAFKA, "topic_state", "schema_registry_url")))
@click.option("--exchange", required=True, type=VenueChoice())
@click.option("--account", required=True)
@click.option("--symbol", help="only this symbol's orders")
@format_option
@click.option("--idle-timeout", type=Duration(), default=5.0, help="stop after this silence")
@connect_timeout_option
def state(
    exchange: str,
    account: str,
    symbol: str | None,
    fmt: str | None,
    idle_timeout: float,
    connect_timeout: float,
) -> None:
    """Print an account's open orders from the state topic."""
    settings = _settings("WARNING")
    from .client import require_broker
    from .statetopic import state_command

    async def run() -> int:
        await require_broker(settings, connect_timeout)
        return await state_command(
            settings,
            exchange,
            account,
            symbol=symbol,
            fmt=output_format(fmt, sys.stdout),
            idle_timeout=idle_timeout,
        )

    sys.exit(_run(run()))


TOPIC_PLAN = (*ALL_TOPICS, "topic_commands_by_account", "topic_partitions")


@cli.command(epilog=_env_help((*KAFKA, "app_id", *TOPIC_PLAN, "topic_replication_factor")))
@click.option(
    "--create",
    is_flag=True,
    help="create the missing topics on the broker and report those that differ from the plan "
    "(exit 1 for a cleanup policy or a required partition count that differs)",
)
@format_option
@connect_timeout_option
def topics(create: bool, fmt: str | None, connect_timeout: float) -> None:
    """Print the topic plan for the current settings: every topic the connector uses, its
    setting, role, partitions, cleanup policy, retention and who creates it."""
    settings = _settings("WARNING")
    from .topicadmin import topics_command

    async def run() -> int:
        if create:
            from .client import require_broker

            await require_broker(settings, connect_timeout)
        return await topics_command(
            settings, create=create, fmt=output_format(fmt, sys.stdout), out=sys.stdout
        )

    sys.exit(_run(run()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: click parses; configuration problems become one stderr line (exit 2)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
