"""Runtime configuration, from ``CONNECTOR_*`` environment variables: the :class:`Settings`
model and the helpers venue settings share (:func:`check_url`, :func:`describe_errors`).

pydantic-settings does the parsing. Reading the environment for start-up, with every venue's
settings too, is :mod:`connector.settings_env`: it needs the venue registry, which needs this
model, so the two live apart (no import cycle, tests/unit/test_architecture.py).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CONNECTOR_"
STATE_TABLE = "open-orders-state"  # the worker's Faust table of per-account state
SCHEDULES_TABLE = "schedules"  # the standing queries' progress (a Faust GlobalTable)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Kafka
    kafka_bootstrap: str = "localhost:9092"
    app_id: str = "exchange-order-connector"
    topic_query_orders: str = "query-orders"
    topic_orders: str = "orders"
    topic_results: str = "order-query-results"
    topic_errors: str = "order-errors"
    # Compacted open-orders table (see docs/state-topic.md); created by `connector broker`.
    topic_state: str = "open-orders"
    # Freshness as data (issue 21, docs/contract.md): per account, how fresh its open orders are
    # (compacted, key <exchange>:<account>), and per order what changed between snapshots
    # (delete retention, key <exchange>:<account>:<order_id>).
    topic_account_status: str = "account-status"
    topic_order_changes: str = "order-changes"
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    kafka_session_timeout_s: float = Field(default=30.0, gt=0)
    kafka_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    kafka_request_timeout_s: float = Field(default=40.0, gt=0)
    # Consumer long-poll wait. Apache Kafka answers as soon as data arrives, so Faust's 1500 is
    # right there; the embedded broker waits it out, so dev/tests set it low.
    kafka_fetch_max_wait_ms: int = Field(default=1500, ge=10, le=30_000)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    schema_registry_url: str | None = None
    # Registry HTTP basic auth as "user:password" (Confluent Cloud: "<api key>:<api secret>"),
    # and a CA bundle for a registry whose TLS certificate is not in the system store.
    schema_registry_basic_auth_user_info: SecretStr | None = None
    schema_registry_ssl_cafile: str | None = None

    # Worker
    accounts_file: str | None = None
    schedules_file: str | None = None  # standing queries, see connector/schedules.py
    # Faust actors: each takes a command, routes it and hands it to its venue's lane
    # (connector/worker/lanes.py), which runs it.
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    # Commands of one venue running at once (a venue's CONNECTOR_<VENUE>_CONCURRENCY overrides
    # it), and commands held in memory (running or waiting for their venue) at most: at that
    # cap the worker stops taking commands until one is answered.
    worker_venue_concurrency: int = Field(default=32, ge=1, le=4096)
    worker_max_in_flight: int = Field(default=256, ge=1, le=65_536)
    # Faust's working directory; it keeps no state (no tables), so a tmpfs/emptyDir is right.
    data_dir: str = "/tmp/connector-data"  # noqa: S108
    # At start, how long the worker waits for its topics to appear on the broker (a
    # provisioning job may still be creating them) before failing with one line naming them.
    startup_topic_wait_s: float = Field(default=30.0, ge=0, le=3600)
    # Whether the worker creates its own topics (state topic, by-account commands, changelogs,
    # leader topic) at start when missing; false: it only checks them and fails with one line
    # naming each missing one (docs/operations.md "Topics"; `connector topics --create`).
    create_topics: bool = True
    # Where a consumer group without a committed offset on a command-topic partition starts:
    # earliest (the topic's history), latest (its end) or start-time (commands produced after
    # the group's first worker process started, minus a few seconds' grace). The position is
    # committed at once, so it is the group's, not one worker's (docs/consuming.md). The default
    # stays earliest: start-time lost a command once in the fault tests (a command fetched while
    # the first worker was committing its start position), so it is opt-in until that is fixed.
    new_group_start: Literal["earliest", "latest", "start-time"] = "earliest"
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # any case
    log_format: Literal["auto", "json", "text"] = "auto"

    # Venue settings (URLs, venue limits) live in each venue's package, with its own
    # CONNECTOR_<VENUE>_* prefix; see connector/exchanges/registry.py.

    # Timeouts, retries, rate limits
    request_timeout_s: float = Field(default=10.0, gt=0)
    command_timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    ws_ping_interval_s: float = Field(default=15.0, gt=0)
    contracts_cache_ttl_s: float = Field(default=3600.0, ge=0)

    # Delivery guarantees (README "Guarantees")
    # Commands larger than this are refused (INVALID_COMMAND) before being decoded.
    command_max_bytes: int = Field(default=65_536, ge=1024, le=1_000_000)
    # Nesting depth of a JSON command; deeper is refused before parsing.
    command_max_depth: int = Field(default=32, ge=2, le=1000)
    # ErrorEvent.command keeps at most this much of the input (its full size goes to
    # command_size); far below the broker's default 1 MB message limit, so an echo always fits.
    error_command_max_bytes: int = Field(default=16_384, ge=0, le=524_288)
    # Commands whose Kafka record timestamp is older than this are answered EXPIRED without
    # querying (0 disables), so a new consumer group does not re-run the topic's history.
    command_max_age_s: float = Field(default=300.0, ge=0)
    # How often Faust commits acknowledged offsets, and after how many acks at most: the bound
    # on what a crash repeats. Faust's own defaults are 2.8 s and 10,000.
    kafka_commit_interval_s: float = Field(default=0.5, gt=0, le=60)
    kafka_commit_every: int = Field(default=16, ge=1)
    # Outage backoff (broker or schema registry): exponential with full jitter, capped.
    outage_backoff_max_s: float = Field(default=5.0, gt=0, le=300)
    # /healthz fails when commands are pending and none made progress for this long; keep it
    # above command_timeout_s (an exchange call is not progress until it returns).
    liveness_stall_s: float = Field(default=300.0, gt=0)
    # On SIGTERM: how long to let in-flight commands finish before abandoning them (their
    # offsets stay uncommitted). Keep it below the pod's terminationGracePeriodSeconds.
    shutdown_drain_s: float = Field(default=20.0, ge=0)

    # An account is STALE when its newest complete snapshot started longer ago than this
    # (connector/freshness.py): keep it above the slowest standing-query interval plus a fetch.
    account_stale_after_s: float = Field(default=120.0, gt=0, le=86_400)

    # State topic and routing (issue 13, docs/state-topic.md)
    # Commands repartitioned by ``<exchange>:<account>``, so one worker handles an account (its
    # state table partition and its exchange rate limits).
    # Default: ``<app_id>-query-orders-by-account``.
    topic_commands_by_account: str | None = None
    # Producer batch size in bytes (aiokafka/Faust default 16384; 256 KB here, so a large snapshot
    # goes out in a few batches). Set it to 1 on the embedded broker when a restarted worker must
    # recover its state table: that broker reports end offsets too low after multi-record
    # batches, which cuts Faust's table recovery short (README "Development setup").
    kafka_producer_max_batch_size: int = Field(default=262_144, ge=1, le=1_000_000)

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, v: str | None) -> str | None:
        return check_url(v, ("http", "https")).rstrip("/") if v else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("new_group_start", mode="before")
    @classmethod
    def _new_group_start(cls, v: object) -> object:
        return v.strip().lower().replace("_", "-") if isinstance(v, str) else v

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        v = v.removeprefix("kafka://")
        for server in v.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v

    @property
    def commands_by_account_topic(self) -> str:
        return self.topic_commands_by_account or f"{self.app_id}-query-orders-by-account"

    @property
    def state_table_changelog(self) -> str:
        """Faust's name for the changelog of the worker's ``open-orders-state`` table."""
        return f"{self.app_id}-{STATE_TABLE}-changelog"

    @property
    def schedules_changelog(self) -> str:
        """Faust's name for the changelog of the standing queries' progress (GlobalTable)."""
        return f"{self.app_id}-{SCHEDULES_TABLE}-changelog"

    @property
    def leader_topic(self) -> str:
        """Faust's leader-election topic (faust/assignor/leader_assignor.py)."""
        return f"{self.app_id}-__assignor-__leader"

    def topic_for(self, role: str) -> str:
        """The topic of a role: ``orders``, ``results``, ``errors``, ``commands``, ``state``,
        ``account-status``, ``order-changes`` (the one role-to-topic map; the worker, the client
        and the CLI all ask here). Raises KeyError for anything else."""
        return {
            "orders": self.topic_orders,
            "results": self.topic_results,
            "errors": self.topic_errors,
            "commands": self.topic_query_orders,
            "state": self.topic_state,
            "account-status": self.topic_account_status,
            "order-changes": self.topic_order_changes,
        }[role]

    @property
    def account_stale_after_ms(self) -> int:
        return int(self.account_stale_after_s * 1000)

    @property
    def topics(self) -> dict[str, str]:
        return {
            "query-orders": self.topic_query_orders,
            "orders": self.topic_orders,
            "order-query-results": self.topic_results,
            "order-errors": self.topic_errors,
        }


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """``value`` if it is an absolute URL with one of ``schemes`` and a host; the error never
    repeats the value (it may carry credentials)."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)}host URL")
    return value.strip()


def describe_errors(exc: ValidationError, prefix: str) -> list[str]:
    problems = []
    for err in exc.errors():
        name = prefix + "_".join(str(p) for p in err["loc"]).upper()
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {msg}")
    return problems
