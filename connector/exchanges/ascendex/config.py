"""AscendEX configuration: settings (``CONNECTOR_ASCENDEX_*``) and accounts-file entries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..registry import Credentials
from .auth import SignKey


class AscendexSettings(BaseSettings):
    """Where AscendEX is. Defaults are the real exchange; the sandbox prints local URLs."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_ASCENDEX_", extra="ignore", frozen=True)

    rest_url: str = "https://ascendex.com"
    ws_url: str = "wss://ascendex.com"

    @field_validator("rest_url", "ws_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")


class AscendexAccountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Which key signs the WebSocket login (see auth.py for why sources disagree).
    ws_sign_key: SignKey = SignKey.BASE64


class AscendexCredentials(Credentials):
    """An AscendEX accounts-file entry: key and secret, no passphrase."""

    options: AscendexAccountOptions = Field(default_factory=AscendexAccountOptions)
