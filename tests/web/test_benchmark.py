"""The web benchmark runs as a user runs it (small: 20 households, 2 days, 10 live updates through
a real Mosquitto) and reports what it measured."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_web_benchmark_times_the_pages_as_a_user_runs_it(tmp_path: Path) -> None:
    require_tool("mosquitto")
    out = tmp_path / "w.json"
    cmd = [sys.executable, "benchmarks/web.py", "--households", "20", "--days", "2",
           "--requests", "8", "--updates", "10", "--json", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert (figures["households"], figures["days"]) == (20, 2)
    assert figures["feeder_buses"] > 20  # the community page drew the feeder
    for key in ("community_p95_s", "timeline_p95_s", "household_p95_s", "household_day_p95_s",
                "baseline_p95_s", "household_first_s"):  # fmt: skip
        assert 0 < figures[key] < 60, key
    assert 0 < figures["live_update_s"] < 2 and figures["live_updates"] == 10
    assert figures["live_update_s"] == figures["live_p95_s"] >= figures["live_p50_s"] > 0
    assert 0 < figures["live_baseline_p50_s"] <= figures["live_baseline_p95_s"] < 2
    assert "web pages over 20 households × 2 days" in run.stdout and "≤ 200 ms" in run.stdout
    assert "live update (/live)" in run.stdout and "≤ 2 s: met" in run.stdout
