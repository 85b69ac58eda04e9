"""The README's deployment path, every step a real process typed as a user types it: two
households with virtual meters, Mosquitto, the coordinator and both controllers; an interval
settles, its signed root reaches both controllers, and the ledger verifies against them."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from gridctl.core import TIME_SCALE_ENV
from gridctl.devices.virtual import free_tcp_port
from tests.deployment import (
    gridctl,
    processes,
    reachable_dir,
    serve_device,
    start_mosquitto,
    write_coordinator_config,
)

HOMES = ("h01", "h02")
SPEED = 300  # one 15-minute interval in 3 s, for every process (GRIDCTL_TIME_SCALE)
HEX64 = r"[0-9a-f]{64}"


def _public_key(printed: str) -> str:
    """The 64-hex public key a keygen command printed."""
    found = re.findall(HEX64, printed)
    assert len(found) == 1, printed
    return found[0]


def _roots(cfg: Path, out: Path) -> list[dict]:
    """The roots ``gridctl controller roots CONFIG --out FILE`` hands over."""
    gridctl("controller", "roots", cfg, "--out", out)
    return json.loads(out.read_text())["roots"]


@pytest.mark.slow
def test_the_readme_deployment_settles_an_interval_whose_root_reaches_both_controllers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIME_SCALE_ENV, f"{SPEED}@{time.time():.3f}")
    mqtt_port = free_tcp_port()
    with reachable_dir() as top, processes(top / "logs") as procs:
        (top / "community.yaml").write_text(f"community: oak\nhouseholds: [{', '.join(HOMES)}]\n")
        gridctl("broker", "config", top / "community.yaml", "--out", top / "broker",
                "--port", str(mqtt_port))  # fmt: skip
        users = json.loads((top / "broker" / "credentials.json").read_text())["users"]
        start_mosquitto(procs, top / "broker", mqtt_port)

        keys = {}
        for k, h in enumerate(HOMES):
            meter_port = free_tcp_port()
            serve_device(procs, f"meter-{h}", "eastron-sdm630", meter_port)
            (top / f"{h}.secret").write_text(users[h] + "\n")
            (top / f"{h}.yaml").write_text(
                f"community: oak\nhousehold: {h}\n"
                f"broker: {{port: {mqtt_port}, password_file: {h}.secret}}\n"
                f"key_file: {h}.key\nstate_db: {h}.sqlite\npoll_s: 0.2\n"
                f"devices:\n  - {{name: meter, role: meter, profile: eastron-sdm630, "
                f"port: {meter_port}}}\n"
            )
            keys[h] = _public_key(gridctl("controller", "keygen", top / f"{h}.yaml"))
            assert k == 0 or keys[h] != keys[HOMES[0]]
        (top / "coordinator.secret").write_text(users["coordinator"] + "\n")
        households = "".join(
            f"  - {{id: {h}, public_key: {keys[h]}, connection_kw: 17.25}}\n" for h in HOMES
        )
        write_coordinator_config(top, mqtt_port, households)
        coordinator_key = _public_key(gridctl("coordinator", "keygen", top / "coordinator.yaml"))
        for h in HOMES:  # every household enrols the coordinator's key
            with open(top / f"{h}.yaml", "a") as f:
                f.write(f"coordinator_key: {coordinator_key}\n")

        procs.start("coordinator", "gridctl", "coordinator", "run", top / "coordinator.yaml", "-v")
        for h in HOMES:
            procs.start(f"controller-{h}", "gridctl", "controller", "run", top / f"{h}.yaml", "-v")

        def settled_with_both() -> int | None:
            """The first interval settled with both households' readings verified."""
            if not (top / "ledger.sqlite").exists():
                return None
            con = sqlite3.connect(f"file:{top / 'ledger.sqlite'}?mode=ro", uri=True)
            try:
                rows = con.execute(
                    "SELECT interval FROM meter_readings WHERE status = 'verified' "
                    "GROUP BY interval HAVING COUNT(DISTINCT meter) = 2 ORDER BY interval LIMIT 1"
                ).fetchall()
            except sqlite3.OperationalError:
                return None
            finally:
                con.close()
            return rows[0][0] if rows else None

        procs.wait_for(lambda: settled_with_both() is not None, 60, "an interval settled")
        interval = settled_with_both()

        def has_root(h: str) -> bool:
            got = _roots(top / f"{h}.yaml", top / f"{h}-roots.json")
            return any(r["interval"] == interval for r in got)

        for h in HOMES:
            procs.wait_for(lambda h=h: has_root(h), 30, f"{h} to keep the root of {interval}")
        procs.check_alive()
        procs.stop()
        for name in procs.procs:
            assert "Traceback" not in procs.log(name), procs.logs_text()
        for h in HOMES:  # what each household holds binds the coordinator's ledger
            out = gridctl("ledger", "verify", top / "ledger.sqlite", "--roots",
                          top / f"{h}-roots.json")  # fmt: skip
            published = re.search(r"(\d+) published roots matched", out)
            assert "ledger intact" in out and published and int(published[1]) >= 1, out
