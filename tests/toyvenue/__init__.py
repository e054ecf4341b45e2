"""A toy third venue, defined entirely inside tests/ to prove that a venue is one package and a
registration: nothing under ``connector/`` knows it exists.

It is registered by importing this module, which ``CONNECTOR_VENUE_PLUGINS=tests.toyvenue`` makes
the worker and ``connector sandbox`` do. It has everything a real venue has: settings with their
own prefix (``CONNECTOR_TOYEX_*``), a credentials model with an option of its own (``desk``), a
command option of its own (``book``), an adapter with signed requests and a simulator that checks
the signature.
"""

from __future__ import annotations

from typing import Any

from connector.exchanges.registry import Simulator, Venue, register
from connector.settings import Settings

from .adapter import ToyAdapter
from .config import ToyCredentials, ToyOptions, ToySettings

NAME = "toyex"


def create_adapter(settings: Settings, venue: Any = None) -> ToyAdapter:
    return ToyAdapter(settings, venue if isinstance(venue, ToySettings) else ToySettings())


def _simulator() -> Simulator:
    from . import simulator

    return Simulator(
        simulator.create_app,
        simulator.demo_accounts,
        lambda base: {"CONNECTOR_TOYEX_REST_URL": base},
    )


VENUE = register(
    Venue(
        name=NAME,
        title="ToyEx",
        settings=ToySettings,
        credentials=ToyCredentials,
        options=ToyOptions,
        create_adapter=create_adapter,
        simulator=_simulator,
    )
)
