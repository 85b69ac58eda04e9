"""A household controller's configuration file (YAML), validated field by field.

```yaml
community: oak
household: h07
broker: {host: 10.0.0.2, port: 8883, tls: true, cafile: ca.pem,   # ca.pem from broker config
         password_file: /etc/gridctl/mqtt.secret}   # + certfile/keyfile if the broker wants them
key_file: /var/lib/gridctl/meter.key        # Ed25519, made by `gridctl controller keygen`
state_db: /var/lib/gridctl/controller.sqlite
coordinator_key: 8a9c...(64 hex)            # printed by `gridctl coordinator keygen`
limits: {fuse_a: 25, phases: 3, export_max_w: 7000}
dimming: {source: input, device: relay}    # §14a: the grid operator's relay (default: coordinator)
devices:
  - {name: meter,   role: meter,   profile: eastron-sdm630, host: 192.168.1.20, unit: 1}
  - {name: battery, role: battery, profile: BATTERY-PROFILE, host: 192.168.1.21, rated_w: 5000}
  - {name: relay,   role: io,      profile: wago-750-352, host: 192.168.1.22}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gridctl.controller.homeassistant import HomeAssistantConfig
from gridctl.core import (
    INTERVAL_S,
    V_NOMINAL_V,
    FilePath,
    GridctlError,
    Host,
    StrictModel,
    read_secret,
    read_yaml,
    validated,
)
from gridctl.protocol import NAME
from gridctl.transport.session import BrokerConfig, BrokerSettings

MAX_POWER_W = 1e7
"""Largest rating or limit a household's device or connection can have, W (10 MW)."""


class ControllerConfigError(GridctlError):
    """A controller configuration is missing or invalid."""


class DeviceConfig(StrictModel):
    """One device the controller drives, through a device profile.

    role: what it is in the household (``io``: a digital I/O device, read only for its
    inputs, such as the §14a relay). rated_w: its power rating, W (> 0), for batteries,
    chargers and inverters.
    """

    name: str = Field(pattern=NAME.pattern)
    role: Literal["meter", "pv", "battery", "ev", "io"]
    profile: Annotated[str, Field(min_length=1, max_length=4096)]
    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit: Annotated[int, Field(ge=0, le=255)] | None = None
    rated_w: Annotated[float, Field(gt=0, le=MAX_POWER_W)] | None = None
    phases: Literal[1, 3] = 3
    """Phases an EV charger uses (its current setpoint is per phase)."""


class Limits(StrictModel):
    """Local limits at the connection; None = none of that kind.

    fuse_a: main fuse per phase, A. export_max_w / import_max_w: a standing grid-operator
    envelope, W (≥ 0).
    """

    fuse_a: Annotated[float, Field(gt=0, le=10_000)] | None = None
    phases: Literal[1, 3] = 3
    export_max_w: Annotated[float, Field(ge=0, le=MAX_POWER_W)] | None = None
    import_max_w: Annotated[float, Field(ge=0, le=MAX_POWER_W)] | None = None

    @property
    def fuse_w(self) -> float | None:
        """The fuse's power limit, W (phases x 230 V x fuse_a)."""
        return None if self.fuse_a is None else self.phases * V_NOMINAL_V * self.fuse_a


class DimmingConfig(StrictModel):
    """Where the household's §14a EnWG dimming signal comes from (``gridctl.public.dimming``).

    source: ``coordinator`` (the plan's steps say when and how far, from the grid operator's
    events to the coordinator) or ``input`` (a digital input: ``device`` names an ``io``
    device whose profile maps ``dim_request``; ``active``: ``closed``, the default, dims while
    the input is on, ``open`` while it is off). An input dims to the guarantee alone (each
    controllable device at most 4.2 kW), as a grid operator's control box does.
    """

    source: Literal["coordinator", "input"] = "coordinator"
    device: str | None = Field(None, pattern=NAME.pattern)
    active: Literal["closed", "open"] = "closed"

    @model_validator(mode="after")
    def _device_for_input(self) -> Self:
        if (self.source == "input") != (self.device is not None):
            raise ValueError("device: give the io device for source input, and only for it")
        return self


class ControllerConfig(StrictModel):
    """Everything a household controller needs. Times in s."""

    community: str = Field(pattern=NAME.pattern)
    household: str = Field(pattern=NAME.pattern)
    broker: BrokerConfig
    key_file: FilePath
    state_db: FilePath
    coordinator_key: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """The coordinator's Ed25519 public key (hex): interval roots signed by it are kept, every
    other is refused (None: no root is kept)."""
    limits: Limits = Limits()
    devices: Annotated[list[DeviceConfig], Field(min_length=1)]
    poll_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    revert_s: Annotated[int, Field(ge=2, le=3600)] = 60
    """Device revert timer: setpoints lapse this long after the controller stops writing."""
    resend_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """A reading the coordinator has not acknowledged is sent again after this long."""
    dimming: DimmingConfig = DimmingConfig()
    home_assistant: HomeAssistantConfig | None = None
    """The household's own Home Assistant broker, for MQTT discovery (None: none)."""
    plan_grace_s: Annotated[float, Field(ge=0, le=INTERVAL_S)] = 120.0
    """How long into an interval a plan made in the previous one still counts as fresh."""

    @model_validator(mode="after")
    def _devices(self) -> Self:
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError("two devices share a name")
        meters = [d for d in self.devices if d.role == "meter"]
        if len(meters) != 1:
            raise ValueError(f"exactly one device with role meter is needed, not {len(meters)}")
        for d in self.devices:
            if d.role in ("battery", "ev") and d.rated_w is None:
                raise ValueError(f"device {d.name}: a {d.role} needs rated_w")
        dim = self.dimming.device
        if dim is not None and not any(d.name == dim and d.role == "io" for d in self.devices):
            raise ValueError(f"dimming.device: no device {dim!r} with role io")
        ha, b = self.home_assistant, self.broker
        if ha is not None and (ha.host, ha.port, ha.username) == (
            b.host, b.port, b.username or self.household
        ):  # fmt: skip
            raise ValueError(
                "home_assistant: same broker and user as the community session, which it "
                "would disconnect (one connection per user); give it its own user or broker"
            )
        return self

    def home_assistant_settings(self) -> BrokerSettings | None:
        """Settings for the Home Assistant session, None without one."""
        ha = self.home_assistant
        if ha is None:
            return None
        password = None
        if ha.password_file is not None:
            password = read_secret(
                ha.password_file, ControllerConfigError, "home_assistant.password_file"
            )
        return BrokerSettings(host=ha.host, port=ha.port, username=ha.username, password=password)

    def broker_settings(self) -> BrokerSettings:
        """Settings for the MQTT session (reads the password file); user: the household."""
        return self.broker.settings(self.household, ControllerConfigError)


def load_controller_config(path: Path) -> ControllerConfig:
    """Read and validate a controller YAML; relative paths are taken from its folder."""
    raw = read_yaml(path, ControllerConfigError)
    cfg = validated(ControllerConfig, raw, ControllerConfigError, path.name)
    base = path.parent
    broker = cfg.broker.relative_to(base)
    ha = cfg.home_assistant
    if ha is not None and ha.password_file is not None:
        ha = ha.model_copy(update={"password_file": base / ha.password_file})
    return cfg.model_copy(
        update={"key_file": base / cfg.key_file, "state_db": base / cfg.state_db,
                "broker": broker, "home_assistant": ha}
    )  # fmt: skip
