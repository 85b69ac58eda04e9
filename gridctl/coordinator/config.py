"""A community coordinator's configuration file (YAML), validated field by field.

```yaml
community: oak
broker: {host: 127.0.0.1, port: 1883, password_file: coordinator.secret}
ledger: ledger.sqlite
inbox: inbox.sqlite
tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}
reward_tokens_per_kwh: 1.0
health_port: 9108
households:
  - {id: h07, public_key: 3b6a27bc...(64 hex), rated_w: 17250}   # from `gridctl controller keygen`
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gridctl.coordinator.service import Coordinator
from gridctl.core import GridctlError, Tariff, read_yaml, validated
from gridctl.protocol import COORDINATOR, NAME
from gridctl.transport.session import BrokerConfig, BrokerSettings


class CoordinatorConfigError(GridctlError):
    """A coordinator configuration is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TariffConfig(_Strict):
    """Prices, currency per kWh."""

    import_per_kwh: Annotated[float, Field(ge=0)]
    feed_in_per_kwh: Annotated[float, Field(ge=0)]
    community_per_kwh: Annotated[float, Field(ge=0)]


class HouseholdEntry(_Strict):
    """A household's main meter: its Ed25519 public key (hex) and connection rating, W."""

    id: str = Field(pattern=NAME.pattern)
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    rated_w: Annotated[float, Field(gt=0)] = 17_250.0


class CoordinatorConfig(_Strict):
    """Everything the coordinator service needs."""

    community: str = Field(pattern=NAME.pattern)
    broker: BrokerConfig
    ledger: Path
    inbox: Path
    tariff: TariffConfig
    reward_tokens_per_kwh: Annotated[float, Field(ge=0)] = 1.0
    health_port: Annotated[int, Field(ge=0, le=65535)] | None = 9108
    households: list[HouseholdEntry] = []

    def broker_settings(self) -> BrokerSettings:
        """Settings for the MQTT session (reads the password file); user: ``coordinator``."""
        return self.broker.settings(COORDINATOR, CoordinatorConfigError)

    def tariff_(self) -> Tariff:
        """The tariff as the core type."""
        t = self.tariff
        return Tariff(t.import_per_kwh, t.feed_in_per_kwh, t.community_per_kwh)


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Read and validate a coordinator YAML; relative paths are taken from its folder."""
    raw = read_yaml(path, CoordinatorConfigError)
    cfg = validated(CoordinatorConfig, raw, CoordinatorConfigError, path.name)
    ids = [h.id for h in cfg.households]
    if len(set(ids)) != len(ids):
        raise CoordinatorConfigError(f"{path.name}: households: an id appears twice")
    base = path.parent
    broker = cfg.broker.relative_to(base)
    return cfg.model_copy(
        update={"ledger": base / cfg.ledger, "inbox": base / cfg.inbox, "broker": broker}
    )


def enrol(cfg: CoordinatorConfig, joined_interval: int) -> list[str]:
    """Register every listed household's main meter not yet in the ledger (from
    ``joined_interval``); returns the ids newly enrolled. A listed key that differs from the
    registered one is refused: keys change by rotation, not by editing the file."""
    from gridctl.settlement.enrol import main_meter
    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.registry import load_registry, register_meter

    new = []
    with Ledger(cfg.ledger) as ledger:
        registry = load_registry(ledger.db)
        for h in cfg.households:
            meter = main_meter(h.id)
            key = bytes.fromhex(h.public_key)
            if meter in registry.meters:
                if not any(
                    k.meter == meter and k.public_key == key for k in registry.keys.values()
                ):
                    raise CoordinatorConfigError(
                        f"household {h.id}: its meter is enrolled with another key"
                    )
                continue
            register_meter(ledger, meter, h.id, "main", h.rated_w, key, joined_interval)
            new.append(h.id)
    return new


def coordinator_from_config(cfg: CoordinatorConfig) -> tuple[Coordinator, list[str]]:
    """The coordinator a configuration describes, after enrolling its new households (from
    the current interval on); returns it and the ids newly enrolled."""
    from datetime import UTC, datetime

    from gridctl.core import interval_of
    from gridctl.settlement.settle import SettlementConfig

    new = enrol(cfg, interval_of(datetime.now(UTC)))
    settlement = SettlementConfig(
        community_per_kwh=cfg.tariff.community_per_kwh,
        reward_tokens_per_kwh=cfg.reward_tokens_per_kwh,
    )
    coordinator = Coordinator(
        cfg.community, cfg.broker_settings(), cfg.ledger, cfg.inbox, settlement,
        planner=None, tariff=cfg.tariff_(), health_port=cfg.health_port,
    )  # fmt: skip
    return coordinator, new
