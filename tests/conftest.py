"""Shared fixtures. Pure-logic tests live in tests/unit and need nothing running; broker-backed
tests live in tests/integration and get their fixtures from tests/integration/conftest.py."""
