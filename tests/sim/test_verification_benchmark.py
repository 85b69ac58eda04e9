"""The verification benchmark runs as a user runs it and scores what settlement found."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_benchmark_scores_a_cheater_as_a_user_runs_it(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    cmd = [sys.executable, "benchmarks/verification.py", "--days", "0.125", "--scenarios",
           "community-20", "--kinds", "inflate", "--sizes", "2000", "--cheaters", "h05",
           "--json", str(out)]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())
    keys = {"scenario", "cheat", "size_w", "detected_share", "false_flag_share", "named_share"}
    assert [(r["cheat"], r["size_w"]) for r in rows] == [("none", 0.0), ("inflate", 2000.0)]
    assert all(keys <= set(r) and r["ledger_ok"] for r in rows)
    honest, cheat = rows
    assert honest["false_flag_share"] == 0.0 and honest["honest_held_share"] == 0.0
    assert cheat["cheating_intervals"] == 12 and cheat["detected_share"] == 1.0
    assert "verification, 0.125 days" in run.stdout
