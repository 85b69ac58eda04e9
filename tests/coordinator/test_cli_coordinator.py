"""`gridctl coordinator run`: enrols the listed households, serves /health, refuses bad input."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import generate_key_file, load_key_file
from gridctl.core import interval_of
from gridctl.devices.virtual import free_tcp_port
from gridctl.protocol import household_topic
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.registry import load_registry
from gridctl.settlement.signing import key_id_of, public_bytes
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks
from tests.coordinator.test_planner import Collector, write_config

runner = CliRunner()


def _config(tmp_path: Path, broker: Broker, health_port: int, key_hex: str) -> Path:
    (tmp_path / "coordinator.secret").write_text(broker.creds["coordinator"] + "\n")
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        f"community: {broker.community}\n"
        f"broker: {{port: {broker.port}, password_file: coordinator.secret}}\n"
        "ledger: ledger.sqlite\ninbox: inbox.sqlite\n"
        "tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}\n"
        f"health_port: {health_port}\n"
        f"households:\n  - {{id: h07, public_key: {key_hex}}}\n"
    )
    if not (tmp_path / "coordinator.key").exists():  # the default key_file
        assert runner.invoke(app, ["coordinator", "keygen", str(cfg)]).exit_code == 0
    return cfg


def test_coordinator_keygen_writes_a_private_key_once(tmp_path: Path) -> None:
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        "community: oak\nbroker: {password_file: s}\nledger: l.sqlite\ninbox: i.sqlite\n"
        "key_file: keys/coordinator.key\n"
        "tariff: {import_per_kwh: 0.3, feed_in_per_kwh: 0.1, community_per_kwh: 0.2}\n"
    )
    res = runner.invoke(app, ["coordinator", "keygen", str(cfg)])
    assert res.exit_code == 0, res.output
    key_file = tmp_path / "keys" / "coordinator.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    pub = public_bytes(load_key_file(key_file))
    out = " ".join(res.output.split())
    assert f"{key_id_of(pub)} {pub.hex()}" in out and "coordinator_key" in out
    again = runner.invoke(app, ["coordinator", "keygen", str(cfg)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    assert public_bytes(load_key_file(key_file)) == pub
    # a coordinator without its key does not start
    key_file.unlink()
    res = runner.invoke(app, ["coordinator", "run", str(cfg)])
    assert res.exit_code == 2 and "coordinator keygen" in " ".join(res.output.split())


def test_coordinator_run_enrols_and_serves_health(broker: Broker, tmp_path: Path) -> None:
    key_hex = generate_key_file(tmp_path / "h07.key").hex()
    port = free_tcp_port()
    cfg = _config(tmp_path, broker, port, key_hex)
    proc = subprocess.Popen([sys.executable, "-m", "gridctl", "coordinator", "run", str(cfg)],
                            env=os.environ.copy(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    health = json.loads(r.read())
                if health["connected"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.2)
        assert health["community"] == broker.community and health["households"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
    assert "no feeder configured" in proc.stderr.read()  # type: ignore[union-attr]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert "h07/main" in load_registry(ledger.db).meters
    # running again with the same file enrols nobody twice; another key for h07 is refused
    other = generate_key_file(tmp_path / "other.key").hex()
    cfg = _config(tmp_path, broker, port, other)
    res = runner.invoke(app, ["coordinator", "run", str(cfg)])
    assert res.exit_code == 2 and "another key" in res.output


async def test_coordinator_run_with_a_feeder_publishes_plans(
    broker: Broker, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, broker, 3)
    got = Collector()
    watch = Session(broker.settings("h01"), "watch-h01",
                    [household_topic(broker.community, "h01", "plan")], got)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridctl", "coordinator", "run", str(cfg),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    task = asyncio.create_task(watch.run())
    try:
        async with asyncio.timeout(60):
            while not got.plans and proc.returncode is None:
                await asyncio.sleep(0.1)
    finally:
        await stop_tasks(task)
        if proc.returncode is None:
            proc.terminate()
        _, err = await proc.communicate()
    assert got.plans, err.decode()
    plan = got.plans[0]
    now = interval_of(datetime.now(UTC))
    assert plan.household == "h01" and plan.issued in (now - 1, now)
    assert plan.steps[0].interval == plan.issued and len(plan.steps) == 4
    assert b"no feeder" not in err


def test_bad_coordinator_configs_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    base = ("community: oak\nbroker: {password_file: s}\nledger: l.sqlite\ninbox: i.sqlite\n"
            "tariff: {import_per_kwh: 0.3, feed_in_per_kwh: 0.1, community_per_kwh: 0.2}\n")  # fmt: skip
    cases = {
        base.replace("community: oak", "community: o/k"): "community",
        base + "households: [{id: h1, public_key: xyz}]\n": "public_key",
        base.replace("import_per_kwh: 0.3", "import_per_kwh: -1"): "import_per_kwh",
        base
        + "households: [{id: h1, public_key: "
        + "a" * 64
        + "}, {id: h1, public_key: "
        + "b" * 64
        + "}]\n": "twice",
        base
        + "feeder: {simbench: 1-LV-rural1--0-sw}\nhouseholds: [{id: h1, public_key: "
        + "a" * 64
        + "}]\n": "households[0].bus",
        base + "feeder: {simbench: 1-LV-rural1--0-sw, file: f.json}\n": "exactly one",
        base: "password_file",  # the secret file does not exist
    }
    generate_key_file(tmp_path / "coordinator.key")
    for text, needle in cases.items():
        cfg.write_text(text)
        res = runner.invoke(app, ["coordinator", "run", str(cfg)])
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, (
            needle,
            res.output,
        )
