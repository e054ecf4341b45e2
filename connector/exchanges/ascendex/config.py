"""AscendEX configuration: settings (``CONNECTOR_ASCENDEX_*``) and accounts-file entries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ...settings import check_url
from ..registry import Credentials
from .auth import SignKey


class AscendexSettings(BaseSettings):
    """Where AscendEX is. Defaults are the real exchange; the sandbox prints local URLs."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_ASCENDEX_", extra="ignore", frozen=True)

    rest_url: str = "https://ascendex.com"
    ws_url: str = "wss://ascendex.com"
    # Per-IP limits (docs/ascendex.md): 20 sessions per account group and 300 in total; 45
    # connection attempts per 5 minutes. Defaults stay below them, leaving headroom for other
    # processes on the same IP.
    max_sessions_per_group: int = Field(default=15, ge=1, le=20)
    max_sessions_total: int = Field(default=200, ge=1, le=300)
    session_idle_timeout_s: float = Field(default=300.0, gt=0)
    connect_budget: int = Field(default=30, ge=1, le=45)
    connect_budget_window_s: float = Field(default=300.0, gt=0)
    # Warn when an API key expires within this many days (keys without IP binding last 90 days).
    key_expiry_warn_days: float = Field(default=7.0, ge=0)

    @field_validator("rest_url")
    @classmethod
    def _rest_url(cls, v: str) -> str:
        return check_url(v, ("http", "https")).rstrip("/")

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, v: str) -> str:
        return check_url(v, ("ws", "wss")).rstrip("/")


class AscendexAccountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Which key signs the WebSocket login (see auth.py for why sources disagree).
    ws_sign_key: SignKey = SignKey.BASE64


class AscendexCredentials(Credentials):
    """An AscendEX accounts-file entry: key and secret, no passphrase."""

    options: AscendexAccountOptions = Field(default_factory=AscendexAccountOptions)
