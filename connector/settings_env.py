"""Reading the settings from the environment at start-up, core and venues together.

:func:`load_settings` turns pydantic's validation report into the one clear line the operator
sees at start-up. That line names *every* bad variable (core and venue settings, and the Kafka
security files and credentials), never a value: a value may be a secret. A ``CONNECTOR_*``
variable that nothing reads is most likely a typo, so :func:`unknown_variables` finds them (with
a suggestion) for a warning, as Kafka clients warn about unknown configs.

Apart from :mod:`connector.settings` (the model) because it asks the venue registry for every
venue's settings, and the registry's venue descriptors refer to the model.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from pydantic import ValidationError

from .errors import ConfigurationError
from .exchanges.registry import setting_names, settings_problems
from .settings import ENV_PREFIX, Settings, describe_errors


def kafka_security_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """What the chosen security protocol needs and lacks: SASL credentials, readable TLS files.

    Read from the environment directly, so these are reported alongside other bad values."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(ENV_PREFIX + name, "").strip()

    problems = []
    protocol = get("KAFKA_SECURITY_PROTOCOL").upper() or "PLAINTEXT"
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if not get(name):
                problems.append(f"{ENV_PREFIX}{name}: required with {protocol}")
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
            path = get(name)
            if path and not os.access(path, os.R_OK):
                why = "no such file" if not os.path.exists(path) else "not readable"
                problems.append(f"{ENV_PREFIX}{name}: {why}: {path}")
        if get("KAFKA_SSL_KEYFILE") and not get("KAFKA_SSL_CERTFILE"):
            problems.append(f"{ENV_PREFIX}KAFKA_SSL_CERTFILE: required with KAFKA_SSL_KEYFILE")
    return problems


def load_settings() -> Settings:
    """Read the environment: core settings, every venue's settings and the Kafka security
    files. Every problem found goes into one ConfigurationError line naming the variables."""
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings()
    except ValidationError as exc:
        problems += describe_errors(exc, ENV_PREFIX)
    # Each venue's own (a disabled venue's are not validated: connector/exchanges/registry.py).
    problems += settings_problems()
    problems += kafka_security_problems()
    if problems:
        raise ConfigurationError("; ".join(problems))
    assert settings is not None
    return settings


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``CONNECTOR_*`` variables nothing reads, each with a suggestion when one is close."""
    known = setting_names()
    env = os.environ if environ is None else environ
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            found.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return found
