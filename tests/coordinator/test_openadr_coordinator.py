"""The coordinator's ``envelopes:`` and ``openadr:`` sections, and `gridctl coordinator run` as
the community's VEN against openleadr's VTN (a real subprocess, a real broker)."""

from __future__ import annotations

import asyncio
import math
import re
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import generate_key_file
from gridctl.coordinator.config import (
    CoordinatorConfigError,
    coordinator_from_config,
    load_coordinator_config,
)
from gridctl.coordinator.flow import MeterFlow
from gridctl.devices.virtual import free_tcp_port
from gridctl.public.envelope import FEEDER
from gridctl.settlement.signing import SignedReading
from tests.conftest import Broker, stop_tasks, until
from tests.public.vtn import Vtn

runner = CliRunner()


def _config(tmp_path: Path, broker_port: int, extra: str, health_port: int = 0) -> Path:
    key_hex = generate_key_file(tmp_path / "h07.key").hex()
    (tmp_path / "coordinator.secret").write_text("secret\n")
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        "community: oak\n"
        f"broker: {{port: {broker_port}, password_file: coordinator.secret}}\n"
        "ledger: ledger.sqlite\ninbox: inbox.sqlite\n"
        "tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}\n"
        f"health_port: {health_port}\n"
        f"households:\n  - {{id: h07, public_key: {key_hex}}}\n" + extra
    )
    return cfg


def test_envelopes_section_sets_default_and_standing_limits(tmp_path: Path) -> None:
    cfg = load_coordinator_config(_config(tmp_path, 1883, (
        "envelopes:\n"
        "  default: {feeder: {import_max_kw: 250, export_max_kw: 100},\n"
        "            household: {export_max_kw: 5}}\n"
        "  limits:\n"
        "    - {target: feeder, export_max_kw: 150}\n"
        "    - {target: h07, import_max_kw: 11, start: 2025-06-01T00:00:00Z,\n"
        "       end: 2025-09-01T00:00:00Z}\n"
        "openadr: {vtn_url: 'https://vtn.example/OpenADR2/Simple/2.0b', ven_name: oak,\n"
        "          cert: tls/ven.pem, key: tls/ven.key, ca_file: tls/ca.pem}\n"
    )))  # fmt: skip
    env = cfg.envelopes.build()
    assert env.default.of(FEEDER) == (250_000, 100_000)
    assert env.default.of("h07") == (math.inf, 5000)
    july = datetime(2025, 7, 1, tzinfo=UTC).timestamp()
    assert env.limits(FEEDER, july, july + 900, july) == (math.inf, 150_000)
    assert env.limits("h07", july, july + 900, july) == (11_000, math.inf)
    october = datetime(2025, 10, 1, tzinfo=UTC).timestamp()
    assert env.limits("h07", october, october + 900, october) == (math.inf, math.inf)
    assert env.silent(10**9) == []  # standing limits never fall silent
    assert cfg.openadr is not None and cfg.openadr.cert == tmp_path / "tls" / "ven.pem"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("envelopes: {limits: [{target: h99, import_max_kw: 5}]}\n", "neither 'feeder'"),
        ("envelopes: {limits: [{target: feeder}]}\n", "import_max_kw, export_max_kw or both"),
        ("envelopes: {default: {feeder: {export_max_kw: -1}}}\n", "export_max_kw"),
        ("envelopes: {default: {feeder: {export_max_kw: .nan}}}\n", "export_max_kw"),
        ("openadr: {vtn_url: 'http://vtn', ven_name: oak, poll_s: 0}\n", "poll_s"),
        ("openadr: {vtn_url: 'http://vtn', ven_name: oak, cert: a.pem}\n", "go together"),
    ],
)
def test_bad_envelopes_or_openadr_sections_refused(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(CoordinatorConfigError, match=message):
        load_coordinator_config(_config(tmp_path, 1883, extra))


def test_meter_flow_is_the_mean_power_of_the_latest_complete_interval() -> None:
    flow = MeterFlow(interval_s=900)
    assert flow.latest() == (None, None)

    def reading(interval: int, imp: int, exp: int) -> SignedReading:
        return SignedReading("feeder/transformer", interval, interval, imp, exp, "0" * 16, b"")

    flow.add(reading(10, 1000, 500))
    assert flow.latest() == (None, None)  # one counter reading: no interval yet
    flow.add(reading(11, 1250, 2500))  # 250 Wh in, 2000 Wh out in 15 min
    assert flow.latest() == (1000.0, 8000.0)
    flow.add(reading(13, 9999, 9999))  # 12 missing: the latest complete interval is still 11
    assert flow.latest() == (1000.0, 8000.0)
    flow.add(reading(12, 1300, 2400))  # 13 is complete now
    assert flow.latest() == ((9999 - 1300) * 4.0, (9999 - 2400) * 4.0)
    flow.add(reading(14, 10_099, 9000))  # the export counter went back: unknown
    assert flow.latest() == (400.0, None)


async def _lines_until(stream: asyncio.StreamReader, pattern: str, seen: list[str],
                       timeout_s: float = 30) -> re.Match[str]:  # fmt: skip
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await stream.readline()).decode()
            assert line, "the coordinator ended:\n" + "".join(seen)
            seen.append(line)
            if m := re.search(pattern, line):
                return m


async def test_coordinator_run_is_a_ven_and_logs_the_envelope(
    broker: Broker, tmp_path: Path
) -> None:
    vtn = Vtn()
    await vtn.start()
    now = datetime.now(UTC)
    event = vtn.add([("x-opModExpLimW", "setpoint", [(now - timedelta(minutes=1), 7200, 5000.0)])])
    port = free_tcp_port()
    cfg = _config(tmp_path, broker.port, (
        "envelopes: {default: {feeder: {import_max_kw: 250, export_max_kw: 100}}}\n"
        f"openadr: {{vtn_url: '{vtn.url}', ven_name: oak, poll_s: 1, report_s: 1}}\n"
    ), health_port=port)  # fmt: skip
    (tmp_path / "coordinator.secret").write_text(broker.creds["coordinator"] + "\n")
    assert runner.invoke(app, ["coordinator", "keygen", str(cfg)]).exit_code == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridctl", "coordinator", "run", str(cfg), "--verbose",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        m = await _lines_until(proc.stderr, r"openadr: registered ven=oak ven_id=(\S+)", seen)
        assert m.group(1) == "ven-oak"
        await _lines_until(proc.stderr, r"envelope interval=\d+ feeder import_max_w=inf "
                                        r"export_max_w=5000$", seen)  # fmt: skip
        # the VEN takes the event's limit as it answers it: the optIn may reach the VTN just after
        async with asyncio.timeout(10):
            while vtn.opts != {event: "optIn"}:
                await asyncio.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "gridctl_envelope_in_force 1.0" in metrics
        await vtn.stop()  # the operator falls silent: the default envelope, logged
        await _lines_until(proc.stderr, r"feeder import_max_w=250000 export_max_w=100000 "
                                        r"\(default: openadr silent", seen, 15)  # fmt: skip
        assert proc.returncode is None
    finally:
        proc.terminate()
        await proc.wait()
        if vtn.server is not None:
            await vtn.stop()


async def test_a_failing_ven_is_counted_and_the_coordinator_goes_on(
    broker: Broker, tmp_path: Path
) -> None:
    # a certificate that is not there: the VEN fails as it starts, again and again
    cfg_path = _config(tmp_path, broker.port, (
        "openadr: {vtn_url: 'https://127.0.0.1:9/OpenADR2/Simple/2.0b', ven_name: oak,\n"
        "          poll_s: 1, cert: gone.pem, key: gone.key, ca_file: gone.pem}\n"
    ))  # fmt: skip
    (tmp_path / "coordinator.secret").write_text(broker.creds["coordinator"] + "\n")
    assert runner.invoke(app, ["coordinator", "keygen", str(cfg_path)]).exit_code == 0
    coordinator, _ = coordinator_from_config(load_coordinator_config(cfg_path))
    task = asyncio.create_task(coordinator.run())
    try:
        await until(lambda: coordinator.failures["openadr"] >= 2, 10)
        await until(lambda: coordinator.last_planned is not None, 10)  # it ticks on
        assert not task.done()
        assert coordinator.metrics.failures.labels(what="openadr")._value.get() >= 2
    finally:
        await stop_tasks(task)
