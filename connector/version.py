"""The package's version: one source for ``--version``, the ready line, ``/status`` and
``connector_build_info``.

The version is written once, in ``pyproject.toml``; the installed distribution's metadata
carries it. A source tree that was never installed has no metadata and reports
``0+unknown`` (a valid PEP 440 local version that sorts below every release), everywhere alike.
A leaf module: it imports nothing from the package, so anything may import it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "exchange-order-connector"
UNKNOWN = "0+unknown"


def _installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a source tree that is not installed
        return UNKNOWN


__version__: str = _installed_version()
