"""Fuzzing the command line with the files a user hands it: scenario, controller, coordinator
and community files made of random bytes, random YAML, or a valid file with one value (or
subtree) replaced by a boundary value or a random structure.

Whatever the file, the command ends with exit 0 or exit 2 and one line on stderr, never a
traceback. The services' ``run`` takes ``--check`` (set up everything from the file, then exit
0 instead of serving), so a mutated file that is still valid ends quickly with exit 0. Many
examples run in-process (typer's runner); a few malformed files also run as real processes.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import generate_key_file
from gridctl.sim.scenario import default_scenario_path

runner = CliRunner()
KEY_HEX = "3b" * 32

SCENARIO = yaml.safe_load(default_scenario_path().read_text(encoding="utf-8"))
SCENARIO["intervals"] = 4
CONTROLLER = {
    "community": "oak", "household": "h07",
    "broker": {"host": "127.0.0.1", "port": 1883, "password_file": "mqtt.secret"},
    "key_file": "meter.key", "state_db": "state/controller.sqlite",
    "limits": {"fuse_a": 25, "phases": 3, "export_max_w": 7000},
    "poll_s": 2.0, "revert_s": 60,
    "devices": [
        {"name": "meter", "role": "meter", "profile": "eastron-sdm630", "unit": 1},
        {"name": "battery", "role": "battery", "profile": "victron-gx-vebus", "rated_w": 5000},
    ],
}  # fmt: skip
COORDINATOR = {
    "community": "oak",
    "broker": {"port": 1883, "password_file": "mqtt.secret"},
    "ledger": "ledger.sqlite", "inbox": "inbox.sqlite",
    "tariff": {"import_per_kwh": 0.32, "feed_in_per_kwh": 0.08, "community_per_kwh": 0.2},
    "reward_tokens_per_kwh": 1.0, "health_port": 9108,
    "households": [
        {"id": "h07", "public_key": KEY_HEX, "connection_kw": 17.25,
         "pv": {"kwp": 8}, "battery": {"kwh": 10, "kw": 5, "soc_min": 0.1}},
    ],
}  # fmt: skip
COMMUNITY = {"community": "oak", "households": ["h01", "h02", {"id": "h03"}]}

KINDS = {  # file kind: (valid content, command line with {file} and {dir})
    "scenario": (SCENARIO, ["sim", "{file}", "--check", "--dispatch", "home"]),
    "controller": (CONTROLLER, ["controller", "run", "{file}", "--check"]),
    "keygen": (CONTROLLER, ["controller", "keygen", "{file}"]),
    "coordinator": (COORDINATOR, ["coordinator", "run", "{file}", "--check"]),
    "community": (COMMUNITY, ["broker", "config", "{file}", "--out", "{dir}/broker"]),
}

BOUNDARY: list[Any] = [
    0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, 0.5, -0.0, 1e308, -1e308,
    5e-324, math.nan, math.inf, -math.inf, "", "x" * 100_000, "ünï©ødé ⚡ 電力", "a\x00b",
    "[/x] [bold]", "line\nbreak", "../../etc/passwd", "17:30", "2026-06-21T00:00:00Z", None,
    True, [], {}, [None], {"": None},
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(BOUNDARY), st.integers(), st.floats(), st.text(max_size=40), st.booleans()
)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one value or subtree (at a random depth) replaced by a boundary value or
    a random structure."""
    if isinstance(base, dict | list) and base and draw(st.integers(0, 3)):
        keys = list(base) if isinstance(base, dict) else list(range(len(base)))
        key = draw(st.sampled_from(keys))
        copy = dict(base) if isinstance(base, dict) else list(base)
        copy[key] = draw(mutated(copy[key]))
        return copy
    return draw(st.sampled_from(BOUNDARY) | structures)


@st.composite
def file_bytes(draw: st.DrawFn, base: Any) -> bytes:
    """Random bytes, random YAML, or a mutated valid file."""
    how = draw(st.sampled_from(["bytes", "yaml", "mutated", "mutated", "mutated"]))
    if how == "bytes":
        return draw(st.binary(max_size=512))
    doc = draw(structures) if how == "yaml" else draw(mutated(base))
    return yaml.safe_dump(doc, allow_unicode=draw(st.booleans())).encode("utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the controller's key and the broker password file the configs name."""
    d = tmp_path_factory.mktemp("fuzz")
    generate_key_file(d / "meter.key")
    generate_key_file(d / "coordinator.key")
    (d / "mqtt.secret").write_text("secret\n")
    return d


def run_in_process(kind: str, content: bytes, workdir: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the command for ``kind`` on a file holding ``content``;
    fails on any exception the command did not turn into an exit code."""
    path = workdir / f"{kind}.yaml"
    path.write_bytes(content)
    args = [a.format(file=path, dir=workdir) for a in KINDS[kind][1]]
    res = runner.invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        e = res.exception
        raise AssertionError(f"{kind}: {type(e).__name__} {str(e)[:300]}") from e
    return res.exit_code, res.stdout, res.stderr


def check_outcome(kind: str, content: bytes, code: int, stderr: str) -> None:
    """Exit 0, or exit 2 with one line on stderr; never a traceback."""
    assert "Traceback" not in stderr, stderr
    assert code in (0, 2), f"{kind}: exit {code} on {content[:300]!r}: {stderr}"
    if code == 2:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (kind, content[:300], stderr)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_valid_files_pass(kind: str, workdir: Path) -> None:
    """The unmutated files are valid, so mutations start from files the CLI accepts."""
    content = yaml.safe_dump(KINDS[kind][0]).encode()
    if kind == "keygen":  # it writes the key the other kinds read
        (workdir / "meter.key").unlink()
    code, out, err = run_in_process(kind, content, workdir)
    # as root, broker config warns that Mosquitto's user may not enter pytest's 0700 folders
    quiet = err == "" or (kind == "community" and err.count("\n") == 1 and "may not enter" in err)
    assert code == 0 and quiet and "Traceback" not in out, (out, err)


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_any_file_ends_in_exit_0_or_2_with_one_line(
    kind: str, workdir: Path, data: st.DataObject
) -> None:
    content = data.draw(file_bytes(KINDS[kind][0]), label="file")
    code, _out, err = run_in_process(kind, content, workdir)
    check_outcome(kind, content, code, err)


MALFORMED = {  # as a user types it, in a real process
    "scenario": (b"\x89PNG\r\n\x1a\n\x00\x00\xff", ["sim", "{file}"], "not UTF-8"),
    "seed": (yaml.safe_dump(SCENARIO).encode(), ["sim", "{file}", "--seed", "-1"], "seed"),
    "reward": (
        yaml.safe_dump({**SCENARIO, "reward_tokens_per_kwh": 1e30}).encode(),
        ["sim", "{file}"],
        "reward_tokens_per_kwh",
    ),
    "controller": (
        yaml.safe_dump({**CONTROLLER, "poll_s": math.nan}).encode(),
        ["controller", "run", "{file}"],
        "poll_s",
    ),
    "coordinator": (
        yaml.safe_dump({**COORDINATOR, "health_port": 2**64}).encode(),
        ["coordinator", "run", "{file}"],
        "health_port",
    ),
    "community": (b"households: [\xc3\x28]", ["broker", "config", "{file}", "--out", "b"], "UTF-8"),
}


@pytest.mark.slow  # ~5 s a process on a busy 2-core machine (importing gridctl's stack)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_in_a_real_process(case: str, tmp_path: Path) -> None:
    content, args, needle = MALFORMED[case]
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "gridctl", *(a.format(file=path) for a in args)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert proc.stdout == ""
