"""The venue registry: the one place the core learns which exchanges exist.

A venue is a package that declares one :class:`Venue` descriptor and registers it. The core
(commands, accounts, pipeline, worker, sandbox, CLI) asks this module for venues by name and
never names one itself, so adding an exchange touches no core file.

Venues are found, in this order, the first time :func:`venues` is called:

1. the packages inside ``connector/exchanges/`` that export ``VENUE`` (the built-in venues);
2. the entry-point group ``connector.exchanges`` (installed third-party packages; each entry
   point names a module that exports ``VENUE`` or calls :func:`register` on import);
3. ``CONNECTOR_VENUE_PLUGINS``: a comma-separated list of modules to import, for venues that are
   not installed packages (the test suite's toy venue is registered this way, in the worker and
   in the sandbox processes alike).

A descriptor carries everything venue-specific the core needs: the settings model (its own
``CONNECTOR_<VENUE>_*`` prefix), the credentials model that validates an accounts-file entry,
the command options model, the adapter factory and the simulator factory for
``connector sandbox``.

Every venue also has the lifecycle settings of :class:`VenueControls` under its prefix, read
here rather than by the venue: ``CONNECTOR_<VENUE>_ENABLED`` (default true) and its circuit
breaker's policy (``CONNECTOR_<VENUE>_CIRCUIT_*``, connector/resilience/breaker.py). A disabled
venue stays registered (commands naming it are still understood, and answered VENUE_DISABLED by
the pipeline), but nothing else of it is touched: its settings are not validated and its adapter
is not created, so a venue that has shut down (see the venue docs) cannot stop the
worker from starting.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import ConfigurationError
from ..model import CommandOptions
from ..resilience.breaker import BreakerPolicy
from ..settings import ENV_PREFIX, Settings, describe_errors

if TYPE_CHECKING:
    from aiohttp import web

    from .base import ExchangeAdapter

PLUGINS_ENV = "CONNECTOR_VENUE_PLUGINS"
ENTRY_POINT_GROUP = "connector.exchanges"


class Credentials(BaseModel):
    """One accounts-file entry. Venues subclass it to add fields (a passphrase, options).

    ``extra="forbid"``: a misspelt field (``pasphrase:``) fails at start instead of being
    silently ignored. Secrets are :class:`~pydantic.SecretStr`, so they never print.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange: str
    api_key: SecretStr
    api_secret: SecretStr

    def secrets(self) -> list[SecretStr]:
        """Every secret of the entry, for redaction. Subclasses with more secrets extend it."""
        return [self.api_key, self.api_secret]

    def option_values(self) -> dict[str, str]:
        """The entry's ``options`` as plain strings (empty unless the venue declares some)."""
        options = getattr(self, "options", None)
        if isinstance(options, BaseModel):
            return {k: str(v) for k, v in options.model_dump(mode="json").items() if v is not None}
        return {}


@dataclass(frozen=True)
class Simulator:
    """How ``connector sandbox`` runs a venue's simulator.

    ``create_app(orders_file)`` builds the aiohttp app; ``demo_accounts()`` gives the
    accounts-file entries that match it; ``env(base_url)`` gives the environment assignments that
    point a worker at a simulator listening on ``base_url`` (``http://host:port``);
    ``app_accounts(app)``, when given, gives the entries of a running app instead of
    ``demo_accounts()``: the demo accounts plus any its orders file seeded.
    """

    create_app: Callable[[str | None], web.Application]
    demo_accounts: Callable[[], Mapping[str, Mapping[str, Any]]]
    env: Callable[[str], dict[str, str]]
    app_accounts: Callable[[web.Application], Mapping[str, Mapping[str, Any]]] | None = None


class _VenueSwitch(BaseSettings):
    """``CONNECTOR_<VENUE>_ENABLED`` alone: read before anything else of the venue."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    enabled: bool = True


class VenueControls(_VenueSwitch):
    """The lifecycle settings every venue has, under its own prefix (``CONNECTOR_<VENUE>_``).

    ``circuit_failures`` consecutive "venue not there" failures open the venue's circuit (per
    scope: the venue, or one of its hosts); the first cool-down is ``circuit_cooldown_s``,
    doubled after each failed probe up to ``circuit_max_cooldown_s``. ``concurrency``: the
    venue's own bulkhead size (connector/worker/lanes.py).
    """

    # Commands of the venue a worker runs at once; unset: CONNECTOR_WORKER_VENUE_CONCURRENCY.
    concurrency: int | None = Field(default=None, ge=1, le=4096)
    circuit_failures: int = Field(default=5, ge=1)
    circuit_cooldown_s: float = Field(default=5.0, gt=0)
    circuit_max_cooldown_s: float = Field(default=300.0, gt=0)

    @field_validator("circuit_max_cooldown_s")
    @classmethod
    def _cap(cls, v: float, info: ValidationInfo) -> float:
        if v < info.data.get("circuit_cooldown_s", 0.0):
            raise ValueError("must not be below the circuit cool-down (CIRCUIT_COOLDOWN_S)")
        return v

    def breaker_policy(self) -> BreakerPolicy:
        return BreakerPolicy(
            failure_threshold=self.circuit_failures,
            cooldown_s=self.circuit_cooldown_s,
            max_cooldown_s=self.circuit_max_cooldown_s,
        )


@dataclass(frozen=True)
class Venue:
    """Everything the core knows about one exchange venue."""

    name: str
    title: str
    settings: type[BaseSettings]
    credentials: type[Credentials]
    create_adapter: Callable[[Settings, Any], ExchangeAdapter]
    options: type[CommandOptions] = CommandOptions
    simulator: Callable[[], Simulator] | None = None

    @property
    def env_prefix(self) -> str:
        """``CONNECTOR_<VENUE>_``: the prefix of the venue's settings (its settings model's)."""
        return str(self.settings.model_config.get("env_prefix", ""))

    def load_settings(self) -> BaseSettings:
        """The venue's settings from the environment; a bad value is one line naming it."""
        return self._load(self.settings)

    def enabled(self) -> bool:
        """``CONNECTOR_<VENUE>_ENABLED`` (default true); a bad value is one line naming it."""
        loaded = self._load(_VenueSwitch, prefixed=True)
        assert isinstance(loaded, _VenueSwitch)
        return loaded.enabled

    def controls(self) -> VenueControls:
        """The venue's lifecycle settings (:class:`VenueControls`)."""
        loaded = self._load(VenueControls, prefixed=True)
        assert isinstance(loaded, VenueControls)
        return loaded

    def problems(self) -> list[str]:
        """Every bad ``CONNECTOR_<VENUE>_*`` value, one entry each, for start-up's one-line
        report: only the switch when the venue is disabled, everything when enabled."""

        models: list[tuple[type[BaseSettings], bool]] = [(_VenueSwitch, True)]
        try:
            if not self.enabled():
                return []
        except ConfigurationError:
            pass  # reported below, with the rest
        else:
            models = [(VenueControls, True), (self.settings, False)]
        problems: list[str] = []
        for model, prefixed in models:
            try:
                self._read(model, prefixed)
            except ValidationError as exc:
                problems += describe_errors(exc, self.env_prefix)
        return problems

    def _read(self, model: type[BaseSettings], prefixed: bool) -> BaseSettings:
        # The lifecycle models have no prefix of their own: they take the venue's.
        return model(_env_prefix=self.env_prefix) if prefixed else model()

    def _load(self, model: type[BaseSettings], *, prefixed: bool = False) -> BaseSettings:
        try:
            return self._read(model, prefixed)
        except ValidationError as exc:
            raise ConfigurationError("; ".join(describe_errors(exc, self.env_prefix))) from None


_venues: dict[str, Venue] = {}
_lock = threading.RLock()
_discovered = False


def register(venue: Venue) -> Venue:
    """Add a venue; registering the same descriptor twice is harmless, a clash is an error."""
    name = venue.name.lower()
    if name != venue.name or not name.isidentifier():
        raise ValueError(f"venue name must be a lower-case identifier, got {venue.name!r}")
    with _lock:
        existing = _venues.get(name)
        if existing is not None and existing is not venue:
            raise ValueError(f"venue {name!r} is already registered")
        _venues[name] = venue
    return venue


def _import_venue_module(module_name: str) -> None:
    module = importlib.import_module(module_name)
    venue = getattr(module, "VENUE", None)
    if isinstance(venue, Venue):
        register(venue)


def discover() -> None:
    """Find the built-in venues, entry points and ``CONNECTOR_VENUE_PLUGINS`` (once)."""
    global _discovered
    with _lock:
        if _discovered:
            return
        package = importlib.import_module(__package__ or "connector.exchanges")
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg and not info.name.startswith("_"):
                _import_venue_module(f"{package.__name__}.{info.name}")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            loaded = ep.load()
            if isinstance(loaded, Venue):
                register(loaded)
        for module_name in os.environ.get(PLUGINS_ENV, "").split(","):
            if module_name.strip():
                try:
                    _import_venue_module(module_name.strip())
                except ImportError as exc:
                    raise ConfigurationError(
                        f"{PLUGINS_ENV}: cannot import {module_name.strip()!r} ({exc.name})"
                    ) from None
        # Only now: a failed plugin import must fail every later call too (the CLI's help text
        # asks first), never leave a half-discovered registry that looks complete.
        _discovered = True


def venues() -> dict[str, Venue]:
    """Every registered venue, by name, in name order."""
    discover()
    with _lock:
        return dict(sorted(_venues.items()))


def get(name: str) -> Venue | None:
    """The venue called ``name`` (case-insensitive), or None."""
    return venues().get(name.lower())


def names() -> list[str]:
    return list(venues())


def setting_names() -> frozenset[str]:
    """Every ``CONNECTOR_*`` variable the connector reads: core settings, the plugin list and
    each registered venue's settings (for deploy checks and docs)."""
    names = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    names.add(PLUGINS_ENV)
    for venue in venues().values():
        prefix = venue.env_prefix
        names.update(prefix + field.upper() for field in venue.settings.model_fields)
        names.update(prefix + field.upper() for field in VenueControls.model_fields)
    return frozenset(names)


def enabled_venues() -> dict[str, Venue]:
    """The registered venues not switched off by ``CONNECTOR_<VENUE>_ENABLED=false``."""
    return {name: venue for name, venue in venues().items() if venue.enabled()}


def disabled_names() -> frozenset[str]:
    """The registered venues switched off by configuration."""
    return frozenset(name for name, venue in venues().items() if not venue.enabled())


def settings_problems() -> list[str]:
    """Every bad venue setting of every registered venue (a disabled venue: its switch only)."""
    return [problem for venue in venues().values() for problem in venue.problems()]


def breaker_policies() -> dict[str, BreakerPolicy]:
    """Each enabled venue's circuit breaker policy, from its ``CONNECTOR_<VENUE>_CIRCUIT_*``."""
    return {name: venue.controls().breaker_policy() for name, venue in enabled_venues().items()}


def venue_concurrency() -> dict[str, int]:
    """The enabled venues with a concurrency of their own (``CONNECTOR_<VENUE>_CONCURRENCY``):
    how many of their commands a worker runs at once (connector/worker/lanes.py)."""
    limits = {name: venue.controls().concurrency for name, venue in enabled_venues().items()}
    return {name: limit for name, limit in limits.items() if limit is not None}


def create_adapters(settings: Settings) -> dict[str, ExchangeAdapter]:
    """One adapter per enabled venue, each configured from its own settings. A disabled venue
    gets none: its settings are not even read, so they may be missing or invalid."""
    return {
        name: venue.create_adapter(settings, venue.load_settings())
        for name, venue in enabled_venues().items()
    }


__all__ = [
    "CommandOptions",
    "Credentials",
    "Simulator",
    "Venue",
    "VenueControls",
    "breaker_policies",
    "create_adapters",
    "disabled_names",
    "enabled_venues",
    "get",
    "names",
    "register",
    "setting_names",
    "settings_problems",
    "venue_concurrency",
    "venues",
]
