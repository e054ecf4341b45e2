"""Bitget configuration: settings (``CONNECTOR_BITGET_*``), accounts-file entries and the
command options Bitget accepts (``product_type``, ``trader_id``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ...settings import check_url
from ..registry import CommandOptions, Credentials
from .schemas import DEFAULT_PRODUCT_TYPE, PRODUCT_TYPES


class BitgetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTOR_BITGET_", extra="ignore", frozen=True)

    rest_url: str = "https://api.bitget.com"
    # Bitget's per-UID limit on the copy-trading endpoints: the current page says 5/s, the
    # older one 10/s; the conservative figure is the default (docs/bitget.md "Rate limit").
    rate_limit_per_s: int = Field(default=5, ge=1)
    # Rows asked per page (``limit`` and ``pageSize``): within both documented maxima (50 on
    # the reference version and the siblings, 100 on the current page).
    page_size: int = Field(default=50, ge=1, le=50)
    # Pages per snapshot, over all windows; more fails the command (SNAPSHOT_TOO_LARGE).
    max_pages: int = Field(default=100, ge=1)
    # How far back the snapshot walks (copy-trade creation time). An open tracking order
    # created before the horizon would be missed, so the default is generous; lower it only
    # if the follower cannot hold tracking orders older than that (e.g. it started copying
    # later). Windows of at most ``window_days`` (<= 89: "three months" may be read as 90 days).
    history_days: int = Field(default=365, ge=1, le=3650)
    window_days: int = Field(default=89, ge=1, le=89)
    # Requests per snapshot (docs/bitget.md "Requests per snapshot"): after a complete snapshot
    # of a scope (account, product type, symbol, trader), the next one walks back only to the
    # oldest tracking order it listed (or its start), minus this margin for clock skew and
    # listing delay. Ten times Bitget's 30-second timestamp window; it costs no request.
    skew_margin_s: int = Field(default=300, ge=0, le=86_400)
    # The full horizon as a check: every N-th snapshot of a scope (1: always, i.e. off) ...
    full_scan_every: int = Field(default=60, ge=1)
    # ... and whenever the scope's last full one is this old (0: always).
    full_scan_interval_s: float = Field(default=600.0, ge=0)
    # Scopes remembered per process (least recently used forgotten: its next snapshot is full).
    scopes_remembered: int = Field(default=10_000, ge=0)

    @field_validator("rest_url")
    @classmethod
    def _rest_url(cls, v: str) -> str:
        return check_url(v, ("http", "https")).rstrip("/")


class BitgetAccountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Bitget limits per user ID; accounts declaring the same uid share one limiter.
    uid: str | None = None


class BitgetCredentials(Credentials):
    """A Bitget accounts-file entry: key, secret and the passphrase Bitget requires."""

    passphrase: SecretStr
    options: BitgetAccountOptions = Field(default_factory=BitgetAccountOptions)

    def secrets(self) -> list[SecretStr]:
        return [*super().secrets(), self.passphrase]


class BitgetOptions(CommandOptions):
    """The QueryOrders fields Bitget accepts."""

    product_type: str = DEFAULT_PRODUCT_TYPE
    trader_id: str | None = None

    @field_validator("product_type", mode="before")
    @classmethod
    def _product_type(cls, v: object) -> object:
        if v is None or v == "":
            return DEFAULT_PRODUCT_TYPE
        if isinstance(v, str):
            upper = v.strip().upper()
            if upper not in PRODUCT_TYPES:
                raise ValueError(f"product_type must be one of {', '.join(PRODUCT_TYPES)}")
            return upper
        return v

    @field_validator("trader_id")
    @classmethod
    def _trader_id(cls, v: str | None) -> str | None:
        return v.strip() if v else None
