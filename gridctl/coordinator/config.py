"""A community coordinator's configuration file (YAML), validated field by field.

```yaml
community: oak
broker: {host: 127.0.0.1, port: 1883, password_file: coordinator.secret}
# over TLS: {host: mqtt.oak.example, port: 8883, tls: true, cafile: ca.pem, password_file: …,
#            certfile: coordinator.pem, keyfile: coordinator.key}   (client certificate: optional)
ledger: ledger.sqlite
inbox: inbox.sqlite
key_file: coordinator.key          # Ed25519, made by `gridctl coordinator keygen` (the default)
tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}
reward_tokens_per_kwh: 1.0
health_port: 9108
feeder: {simbench: 1-LV-rural1--0-sw}      # or {file: feeder.json}; without it, no plans
limits: {v_min_pu: 0.94, v_max_pu: 1.06, loading_max_pct: 100}         # optional
dispatch: {horizon: 96, replan_every: 4, near: 12}                     # optional
opendata: {k: 5, publish: true}    # optional: fewest households a public figure covers (≥ 2),
                                   # broadcast each interval's aggregates (default: no)
ingest: {readings_per_s: 1, readings_burst: 500, other_per_s: 5, other_burst: 100,
         max_skew_s: 300}          # optional: per-household rate limits, telemetry clock skew
envelopes:                                                             # optional
  default: {feeder: {import_max_kw: 250, export_max_kw: 100}}  # while the operator is silent
  limits: [{target: feeder, export_max_kw: 150}]      # standing limits: gridctl.public.spec
openadr: {vtn_url: "https://vtn.example/OpenADR2/Simple/2.0b", ven_name: oak, poll_s: 10,
          cert: ven.pem, key: ven.key, ca_file: ca.pem}    # optional: see gridctl.public.openadr
households:
  - id: h07
    public_key: 3b6a27bc...(64 hex)        # from `gridctl controller keygen`
    member_key: 9f00c1d2...(64 hex)        # optional: its vote key, `gridctl member keygen`
    connection_kw: 17.25                   # main fuse as power
    bus: LV1.101 Bus 1                     # with a feeder: name or index of its bus
    load: {profile: H0-A, annual_kwh: 3500}
    pv: {kwp: 8}
    battery: {kwh: 10, kw: 5, soc_min: 0.1}
    ev: {arrival: "17:30", departure: "07:00", kwh: 20, kw: 11}   # a usual day, UTC
```

Households and the feeder are described as in simulation scenarios (``gridctl.dispatch.spec``).
With a ``feeder`` the coordinator plans every interval (``gridctl.coordinator.planner``), within
the envelopes in force: the standing ones, the grid operator's (``openadr``, the coordinator then
is an OpenADR VEN) and the default one while the operator's server is silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, model_validator

from gridctl.coordinator.limits import OTHER, READINGS, RateLimit
from gridctl.core import FilePath, GridctlError, StrictModel, read_yaml, validated
from gridctl.dispatch.spec import Bus, CommunitySpec, HouseholdSpec
from gridctl.protocol import COORDINATOR, NAME
from gridctl.public.openadr_spec import OpenAdrSpec
from gridctl.transport.session import BrokerConfig, BrokerSettings

if TYPE_CHECKING:  # the service (planner, pandapower: seconds to import) only to run one
    from gridctl.coordinator.service import Coordinator

log = logging.getLogger(__name__)


class CoordinatorConfigError(GridctlError):
    """A coordinator configuration is missing or invalid."""


class HouseholdEntry(HouseholdSpec):
    """A household: its main meter's Ed25519 public key (hex), its member's vote key, its
    connection (``connection_kw`` also rates the meter) and, for planning, its bus and
    devices."""

    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    member_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The household member's vote key (Ed25519, hex), apart from the meter's: a person votes,
    a meter measures (None: the household does not vote)."""
    bus: Bus | None = None


class IngestSpec(StrictModel):
    """What the coordinator takes in from each household: rate limits (token buckets, real
    time; readings apart from telemetry and status) and the clock skew allowed on telemetry."""

    readings_per_s: Annotated[float, Field(gt=0, le=1000)] = READINGS.per_s
    readings_burst: Annotated[float, Field(ge=1, le=100_000)] = READINGS.burst
    other_per_s: Annotated[float, Field(gt=0, le=1000)] = OTHER.per_s
    other_burst: Annotated[float, Field(ge=1, le=100_000)] = OTHER.burst
    max_skew_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0


class CoordinatorConfig(CommunitySpec):
    """Everything the coordinator service needs: the community (households with their keys)
    and the service's files, broker and limits."""

    community: str = Field(pattern=NAME.pattern)
    broker: BrokerConfig
    ledger: FilePath
    inbox: FilePath
    key_file: FilePath = Path("coordinator.key")
    """The coordinator's private key, which signs every interval root and key event."""
    health_port: Annotated[int, Field(ge=0, le=65535)] | None = 9108
    households: list[HouseholdEntry] = Field(default_factory=list)  # type: ignore[assignment]
    ingest: IngestSpec = IngestSpec()
    openadr: OpenAdrSpec | None = None
    """The grid operator's OpenADR 2.0b VTN (None: no operator signals)."""

    @model_validator(mode="after")
    def _buses_with_feeder(self) -> Self:
        if self.feeder is None:
            return self
        if not self.households:
            raise ValueError("a feeder needs households to plan")
        for k, h in enumerate(self.households):
            if h.bus is None:
                raise ValueError(f"households[{k}].bus: a feeder needs each household's bus")
        return self

    def broker_settings(self) -> BrokerSettings:
        """Settings for the MQTT session (reads the password file); user: ``coordinator``."""
        return self.broker.settings(COORDINATOR, CoordinatorConfigError)


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Read and validate a coordinator YAML; relative paths are taken from its folder."""
    raw = read_yaml(path, CoordinatorConfigError)
    cfg = validated(CoordinatorConfig, raw, CoordinatorConfigError, path.name)
    base = path.parent
    broker = cfg.broker.relative_to(base)
    update = {"ledger": base / cfg.ledger, "inbox": base / cfg.inbox, "broker": broker,
              "key_file": base / cfg.key_file}  # fmt: skip
    if cfg.feeder is not None and cfg.feeder.file is not None:
        update["feeder"] = cfg.feeder.model_copy(update={"file": base / cfg.feeder.file})
    if cfg.openadr is not None:
        update["openadr"] = cfg.openadr.relative_to(base)
    return cfg.model_copy(update=update)


def enrol(cfg: CoordinatorConfig, joined_interval: int) -> list[str]:
    """Register every listed household's main meter (and member key) not yet in the ledger
    (from ``joined_interval``); returns the ids whose meter was newly enrolled. A listed meter
    key that differs from the registered one is refused: keys change by rotation, not by
    editing the file; a member key used by another household too."""
    from gridctl.coordinator.assembly import charter
    from gridctl.governance.book import Governance
    from gridctl.governance.params import GovernanceError
    from gridctl.settlement.enrol import main_meter
    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.registry import load_registry, register_meter

    new = []
    with Ledger(cfg.ledger) as ledger:
        governance = Governance(ledger, cfg.community, charter(cfg))
        for h in cfg.households:
            if h.member_key is not None:
                try:
                    governance.enrol_member(h.id, bytes.fromhex(h.member_key), joined_interval)
                except GovernanceError as e:
                    raise CoordinatorConfigError(f"household {h.id}: member_key: {e}") from None
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
            register_meter(  # counters not known here: the first reading sets them
                ledger, meter, h.id, "main", h.connection_w, key, joined_interval,
                None, None,
            )  # fmt: skip
            new.append(h.id)
    return new


def coordinator_key(cfg: CoordinatorConfig) -> Ed25519PrivateKey:
    """The coordinator's private key (``key_file``)."""
    from gridctl.controller.keys import load_key_file

    if not cfg.key_file.exists():
        raise CoordinatorConfigError(
            f"no coordinator key at {cfg.key_file}: make it once with "
            "`gridctl coordinator keygen CONFIG` and enrol its public key in every controller"
        )
    return load_key_file(cfg.key_file)


def coordinator_from_config(
    cfg: CoordinatorConfig, clock: Callable[[], float] = time.time
) -> tuple[Coordinator, list[str]]:
    """The coordinator a configuration describes, after enrolling its new households (from
    the current interval on); returns it and the ids newly enrolled. clock: epoch s."""
    from gridctl.coordinator.assembly import assemble, charter
    from gridctl.coordinator.feeder_state import feeder_state
    from gridctl.coordinator.service import Coordinator
    from gridctl.core import interval_at

    key = coordinator_key(cfg)  # before anything is enrolled
    community = assemble(cfg)  # a bad feeder or bus fails before anything is enrolled
    new = enrol(cfg, interval_at(clock()))
    if community.planner is None:
        log.warning(
            "no feeder configured: no plans are published, households run their local policy"
        )
    # the planner's envelopes (assembled from the config's envelopes section), else the same
    envelopes = community.planner.envelopes if community.planner else cfg.envelopes.build()
    coordinator = Coordinator(
        cfg.community, cfg.broker_settings(), cfg.ledger, cfg.inbox, community.settlement, key,
        planner=community.planner, tariff=cfg.tariff.prices(), physics=community.physics,
        governance=charter(cfg), clock=clock,
        health_port=cfg.health_port,
        max_skew_s=cfg.ingest.max_skew_s,
        readings_limit=RateLimit(cfg.ingest.readings_per_s, cfg.ingest.readings_burst),
        other_limit=RateLimit(cfg.ingest.other_per_s, cfg.ingest.other_burst),
        envelopes=envelopes, openadr=cfg.openadr,
        publish_opendata=cfg.opendata.publish,
        feeder=feeder_state(cfg, cfg.ledger, community.planner),
    )  # fmt: skip
    return coordinator, new
