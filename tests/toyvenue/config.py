"""ToyEx settings, accounts-file entry and command options."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.exchanges.registry import CommandOptions, Credentials


class ToySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTOR_TOYEX_", extra="ignore", frozen=True)

    rest_url: str = "https://toyex.invalid"


class ToyAccountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    desk: str


class ToyCredentials(Credentials):
    options: ToyAccountOptions


class ToyOptions(CommandOptions):
    book: Literal["main", "side"] = "main"
