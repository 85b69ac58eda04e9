"""The command line as a user meets it: outputs, exit codes and one-line errors."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.sim.scenario import default_scenario_path

runner = CliRunner()


def _scenario(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(default_scenario_path().read_text())
    raw["intervals"] = 4
    edit(raw)
    path = tmp_path / "scn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sim_from_another_directory_writes_everything(tmp_path: Path) -> None:
    """The installed console script finds the packaged default scenario from any directory."""
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(
        [shutil.which("gridctl") or "gridctl", "sim", "--intervals", "8", "--out", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "self_sufficiency" in proc.stdout and "report:" in proc.stdout
    out = tmp_path / "res"
    kpi = json.loads((out / "kpis.json").read_text())
    assert kpi["intervals"] == 8 and len(kpi["ledger_head"]) == 64
    for name in (
        "ledger.sqlite",
        "grid.sqlite",
        "report.html",
        "feeder_power.png",
        "voltage.png",
        "households.png",
    ):
        assert (out / name).stat().st_size > 1000, name
    assert "Traceback" not in proc.stderr


def test_sim_json_on_standard_output_is_only_json(tmp_path: Path) -> None:
    """Nothing else reaches standard output (HiGHS prints a banner there on first use)."""
    proc = subprocess.run(
        [shutil.which("gridctl") or "gridctl", "sim", "--intervals", "2", "--out", "res", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["intervals"] == 2


def test_rerun_replaces_old_outputs(tmp_path: Path) -> None:
    args = ["sim", "--intervals", "4", "--out", str(tmp_path), "--json"]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.output)["ledger_head"] == json.loads(second.output)["ledger_head"]


BAD = {
    "missing_field": (lambda r: r.pop("tariff"), "tariff"),
    "wrong_type": (lambda r: r["households"][1]["pv"].update(kwp="lots"), "households[1].pv.kwp"),
    "negative": (lambda r: r["households"][0]["pv"].update(kwp=-2), "households[0].pv.kwp"),
    "unknown_key": (lambda r: r["households"][0].update(colour="red"), "households[0].colour"),
    "simbench_code": (
        lambda r: r.update(feeder={"simbench": "9-XX-nowhere--0-sw"}),
        "9-XX-nowhere--0-sw",
    ),
    "bus": (lambda r: r["households"][3].update(bus="LV1.101 Bus 99"), "LV1.101 Bus 99"),
    "profile": (lambda r: r["households"][2]["load"].update(profile="H9-Z"), "H9-Z"),
    "price_order": (lambda r: r["tariff"].update(feed_in_per_kwh=0.5), "feed_in"),
    "intervals": (lambda r: r.update(intervals=0), "intervals"),
    "negative_battery": (
        lambda r: r["households"][1]["battery"].update(kwh=-5),
        "households[1].battery.kwh",
    ),
    "ev_window": (lambda r: r["households"][3]["ev"].update(departure="17:30"), "households[3].ev"),
    "unquoted_time": (  # YAML reads an unquoted 17:30 as the number 1050
        lambda r: r["households"][3]["ev"].update(arrival=17 * 60 + 30),
        "must be quoted",
    ),
    "horizon": (lambda r: r.update(dispatch={"horizon": 0}), "dispatch.horizon"),
    "opendata_k_1": (lambda r: r.update(opendata={"k": 1}), "opendata.k"),
    "huge_reward": (lambda r: r.update(reward_tokens_per_kwh=1e30), "reward_tokens_per_kwh"),
    "nan_price": (lambda r: r["tariff"].update(import_per_kwh=float("nan")), "finite"),
    "infinite_pv": (lambda r: r["households"][0]["pv"].update(kwp=float("inf")), "pv.kwp"),
    "huge_seed": (lambda r: r.update(seed=2**64), "seed"),
    "huge_bus": (lambda r: r["households"][0].update(bus=2**63), "households[0].bus"),
    "year_9999": (lambda r: r.update(start="9999-12-31T23:45:00Z"), "start"),
    "nul_in_path": (lambda r: r.update(feeder={"file": "a\0b.json"}), "feeder.file"),
    "markup_and_newline_key": (lambda r: r.update({"[/x]\nend": 1}), "[/x]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    edit, needle = BAD[case]
    result = runner.invoke(
        app, ["sim", str(_scenario(tmp_path, edit)), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()  # not even an empty line before it
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


def test_missing_scenario_file_and_bad_override(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["sim", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read scenario" in missing.output
    for args, needle in ((["--intervals", "0"], "intervals"), (["--seed", "-1"], "seed"),
                         (["--seed", str(2**64)], "seed")):  # fmt: skip
        bad = runner.invoke(app, ["sim", *args, "--out", str(tmp_path)])
        assert bad.exit_code == 2 and needle in bad.output, bad.output
        assert len(bad.output.splitlines()) == 1, bad.output


@pytest.mark.parametrize(
    "content, needle",
    [(b"households: [\xff\xfe]\n", "not UTF-8 text (byte 13 is 0xff)"),
     (b"[" * 100_000, "nested too deeply"),
     (b"a: 1\n" * 1_000_000, "larger than 4 MiB"),
     (b"a: \x00\n", "not valid YAML")],
)  # fmt: skip
def test_unreadable_scenario_bytes_exit_2(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "scn.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, ["sim", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output


def test_out_of_range_device_options_exit_2() -> None:
    for args in (["scan", "127.0.0.1", "--port", "70000"], ["scan", "h", "--unit", "-1"],
                 ["serve", "battery", "--unit", "256"],
                 ["read", "h", "--profile", "eastron-sdm630", "--port", "0"]):  # fmt: skip
        result = runner.invoke(app, ["device", *args])
        assert result.exit_code == 2 and "must be" in result.output, result.output
        assert len(result.output.splitlines()) == 1, result.output


def test_tables_show_every_digit_of_a_meter_counter() -> None:
    from gridctl.cli import _shown

    assert _shown(12_345_678.9) == "12345678.9"  # a Wh counter, not 1.23457e+07
    assert _shown(0.1 * 3) == "0.3" and _shown(None) == "n/a" and _shown(None, "") == ""
