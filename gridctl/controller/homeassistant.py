"""Home Assistant MQTT discovery: the household's sensors, on the household's own broker.

The controller announces each sensor once (retained) under the discovery prefix and then
publishes one JSON state per poll; Home Assistant builds a "gridctl <household>" device from
it. This goes to the household's Home Assistant broker, never to the community's: a
household's consumption is its own data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from gridctl.core import FilePath, Host, StrictModel
from gridctl.protocol import Telemetry


class HomeAssistantConfig(StrictModel):
    """The household's Home Assistant broker (anonymous if no username)."""

    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: Annotated[str, Field(max_length=1024)] | None = None
    password_file: FilePath | None = None
    prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_/-]{1,64}$")


@dataclass(frozen=True)
class Sensor:
    """One Home Assistant sensor: its id, name, unit, classes and the template reading it."""

    key: str
    name: str
    unit: str | None
    device_class: str | None
    state_class: str | None
    template: str


SENSORS = (
    Sensor("grid_power", "Grid power", "W", "power", "measurement", "{{ value_json.grid_p_w }}"),
    Sensor("pv_power", "PV power", "W", "power", "measurement",
           "{{ -value_json.pv_p_w if value_json.pv_p_w is not none else none }}"),
    Sensor("battery_power", "Battery power", "W", "power", "measurement",
           "{{ value_json.battery_p_w }}"),
    Sensor("battery_soc", "Battery state of charge", "%", "battery", "measurement",
           "{{ (value_json.soc * 100) | round(1) if value_json.soc is not none else none }}"),
    Sensor("ev_power", "EV charging power", "W", "power", "measurement",
           "{{ value_json.ev_p_w }}"),
    Sensor("grid_import", "Grid import", "Wh", "energy", "total_increasing",
           "{{ value_json.e_import_wh }}"),
    Sensor("grid_export", "Grid export", "Wh", "energy", "total_increasing",
           "{{ value_json.e_export_wh }}"),
    Sensor("mode", "Community mode", None, None, None, "{{ value_json.mode }}"),
)  # fmt: skip
"""Power signs as in gridctl (grid and battery > 0 drawing), PV shown as production (> 0)."""


def state_topic(household: str) -> str:
    """Where the controller publishes its state for Home Assistant."""
    return f"gridctl/{household}/state"


def availability_topic(household: str) -> str:
    """``online`` / ``offline`` (last will) of the controller, for Home Assistant."""
    return f"gridctl/{household}/availability"


def discovery(prefix: str, household: str) -> list[tuple[str, bytes]]:
    """(topic, payload) of every sensor's discovery message (publish retained)."""
    device = {
        "identifiers": [f"gridctl_{household}"],
        "name": f"gridctl {household}",
        "manufacturer": "gridctl",
        "model": "household controller",
    }
    out = []
    for s in SENSORS:
        config: dict[str, object] = {
            "name": s.name,
            "unique_id": f"gridctl_{household}_{s.key}",
            "object_id": f"gridctl_{household}_{s.key}",
            "state_topic": state_topic(household),
            "value_template": s.template,
            "availability_topic": availability_topic(household),
            "device": device,
        }
        extra = {"unit_of_measurement": s.unit, "device_class": s.device_class,
                 "state_class": s.state_class}  # fmt: skip
        config.update({k: v for k, v in extra.items() if v is not None})
        topic = f"{prefix}/sensor/gridctl_{household}/{s.key}/config"
        out.append((topic, json.dumps(config).encode()))
    return out


def state(t: Telemetry, e_import_wh: float | None, e_export_wh: float | None) -> bytes:
    """The state JSON: the telemetry plus the meter's counters (Wh)."""
    doc = json.loads(t.model_dump_json())
    doc.update(e_import_wh=e_import_wh, e_export_wh=e_export_wh)
    return json.dumps(doc).encode()
