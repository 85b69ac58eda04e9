"""`gridctl controller keygen` and bad controller configurations."""

import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import load_key_file
from gridctl.devices.virtual import free_tcp_port
from gridctl.protocol import Telemetry, household_topic
from gridctl.settlement.signing import key_id_of, public_bytes
from tests.conftest import Broker
from tests.deployment import Watcher, gridctl, processes, serve_device

runner = CliRunner()
CONFIG = """
community: oak
household: h07
broker: {port: 1883, password_file: mqtt.secret}
key_file: keys/meter.key
state_db: state/controller.sqlite
limits: {fuse_a: 25}
devices:
  - {name: meter, role: meter, profile: eastron-sdm630, unit: 1}
  - {name: battery, role: battery, profile: victron-gx-vebus, rated_w: 5000}
"""


def test_keygen_writes_a_private_key_once_and_prints_its_id(tmp_path: Path) -> None:
    cfg = tmp_path / "controller.yaml"
    cfg.write_text(CONFIG)
    res = runner.invoke(app, ["controller", "keygen", str(cfg)])
    assert res.exit_code == 0, res.output
    key_file = tmp_path / "keys" / "meter.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    pub = public_bytes(load_key_file(key_file))
    assert key_id_of(pub) in res.output and pub.hex() in res.output and "h07/main" in res.output
    again = runner.invoke(app, ["controller", "keygen", str(cfg)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    assert public_bytes(load_key_file(key_file)) == pub


def test_bad_configurations_exit_2_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "controller.yaml"
    cases = {
        CONFIG.replace("household: h07", "household: h/07"): "household",
        CONFIG.replace("rated_w: 5000", "rated_w: -1"): "rated_w",
        CONFIG.replace("role: meter,", "role: pv,"): "meter",
        CONFIG.replace(", password_file: mqtt.secret", ""): "password",
        CONFIG.replace("fuse_a: 25", "fuse_a: 0"): "fuse_a",
        CONFIG.replace(
            "limits:", "home_assistant: {port: 1883, username: h07}\nlimits:"
        ): "one connection per user",
    }
    for text, needle in cases.items():
        cfg.write_text(text)
        res = runner.invoke(app, ["controller", "keygen", str(cfg)])
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, text
    cfg.write_text(CONFIG)  # a key that is not a key
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "meter.key").write_text("not a key")
    (tmp_path / "mqtt.secret").write_text("pw\n")
    res = runner.invoke(app, ["controller", "run", str(cfg)])
    assert res.exit_code == 2 and "not a PEM private key" in res.output


def test_controller_run_as_a_process_reads_its_meter_and_publishes(
    broker: Broker, tmp_path: Path
) -> None:
    """`gridctl controller run` as a user starts it, against `gridctl device serve`: it polls
    its meter and publishes telemetry (pymodbus binds its clients to the running event loop;
    a controller that made them before the loop died at start)."""
    port = free_tcp_port()
    (tmp_path / "h01.secret").write_text(broker.creds["h01"] + "\n")
    cfg = tmp_path / "controller.yaml"
    cfg.write_text(
        f"community: {broker.community}\nhousehold: h01\n"
        f"broker: {{port: {broker.port}, password_file: h01.secret}}\n"
        "key_file: meter.key\nstate_db: controller.sqlite\npoll_s: 0.5\n"
        f"devices:\n  - {{name: meter, role: meter, profile: eastron-sdm630, port: {port}}}\n"
    )
    topic = household_topic(broker.community, "h01", "telemetry")
    watch = Watcher(broker.port, "coordinator", broker.creds["coordinator"], [topic])
    try:
        with processes(tmp_path / "logs") as procs:
            serve_device(procs, "meter", "eastron-sdm630", port)
            gridctl("controller", "keygen", cfg)
            procs.start("controller", "gridctl", "controller", "run", cfg, "-v")
            procs.wait_for(lambda: len(watch.on(topic)) >= 3, 30, "telemetry from h01")
            procs.check_alive()
    finally:
        watch.close()
    tel = watch.on(topic)[-1]
    assert isinstance(tel, Telemetry)
    assert tel.grid_p_w == 1800.0 and tel.mode == "fallback" and tel.faulted == []
    assert "Traceback" not in procs.log("controller")
