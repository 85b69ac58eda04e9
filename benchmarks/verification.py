"""Verification benchmark: how well settlement catches households that fake their contribution.

    OPENBLAS_NUM_THREADS=1 python benchmarks/verification.py [--json FILE] [--days 7]
        [--scenarios community-20,stress-summer] [--kinds inflate,copy,replay,reverse]
        [--sizes 500,1000,2000] [--cheaters h05,h09]

Per scenario, the world (dispatch, device physics, AC power flows) runs once for ``--days``
with the community planner. Its truth is then measured again and again by the meters of
``gridctl.sim.meters`` (households class B, transformer class C, the scenario's classes; errors
N(0, MPE/3) truncated at the MPE, voltages 0.1 %), once honestly and once per cheat kind, size
and cheater, and each set of signed readings is settled into its own ledger by the production
``Settler`` with the community's physics check (state estimation with iterated largest
normalised residual, export capability where the check has it). A cheat does not change what
flows, so the world need not run again: only what the cheater's meter signs differs.

One row per scenario, cheat, size and cheater (plus an honest row per scenario):

- ``detected_share``: cheating intervals (at least half the size claimed as extra export) in
  which the cheater was named or held;
- ``named_share``: of those, the share in which the cheater itself was named (its claim
  rejected), not merely held with others;
- ``false_flag_share``: honest household-intervals in which an honest household was named;
- ``honest_held_share``: honest household-intervals whose rewards were held (physics could not
  clear them);
- ``delay_intervals``: intervals from the cheat's start to its first detection;
- ``at_stake_wh`` / ``caught_wh``: extra export claimed in cheating intervals, and the part of
  it in detected ones; ``held_tokens`` / ``forfeited_tokens``: tokens in the holding account
  and forfeited at the end;
- ``check_ms`` / ``settle_ms``: mean physics check and whole settlement time per interval;
- ``ledger_ok``: ``ledger verify`` of the run's ledger passes.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from gridctl.core import INTERVALS_PER_DAY, interval_hours
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import (
    TRANSFORMER_METER,
    enrol_simulated,
    main_meter,
    simulated_coordinator_key,
)
from gridctl.settlement.holds import HOLDING
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.physics import Claims, Finding, PhysicsCheck
from gridctl.settlement.pool import ISSUANCE, TOKEN
from gridctl.settlement.settle import Settler
from gridctl.sim.devices import reported_voltages_mv
from gridctl.sim.engine import Setup, planned, prepare, sign_interval
from gridctl.sim.meters import Meters
from gridctl.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("inflate", "copy", "replay", "reverse")
TARGETS = {"detected_share": 0.95, "false_flag_share": 0.01, "named_share_1kw": 0.90}


@dataclass(frozen=True)
class Truth:
    """What flowed, per interval t: household powers p_w (T, H) and voltages v_pu (T, H), the
    transformer's power p_trafo_w (T,) and LV voltage trafo_v_pu (T,)."""

    p_w: np.ndarray
    v_pu: np.ndarray
    p_trafo_w: np.ndarray
    trafo_v_pu: np.ndarray


def run_world(scn: Scenario) -> tuple[Setup, Truth]:
    """Run the scenario's world once with the community planner (no settlement)."""
    s = prepare(scn)
    for t in range(scn.intervals):
        s.step(t, *planned(s, scn.first_interval + t, t))
    h = s.world.history
    return s, Truth(
        p_w=np.array([i.p_w for i in h]),
        v_pu=np.array([i.v_pu for i in h]),
        p_trafo_w=np.array([i.ac.p_trafo_w for i in h]),
        trafo_v_pu=np.array([i.trafo_v_pu for i in h]),
    )


class Timed:
    """A physics check that remembers its findings and how long it took."""

    def __init__(self, check: PhysicsCheck):
        self.check = check
        self.seconds = 0.0
        self.findings: list[Finding] = []

    def __call__(self, claims: Claims) -> Finding:
        t0 = time.perf_counter()
        f = self.check(claims)
        self.seconds += time.perf_counter() - t0
        self.findings.append(f)
        return f


def _balance(db: Path, account: str, asset: str) -> int:
    con = sqlite3.connect(db)
    q = "SELECT COALESCE(SUM(amount), 0) FROM entries WHERE account = ? AND asset = ?"
    v = con.execute(q, (account, asset)).fetchone()[0]
    con.close()
    return int(v)


def settle_run(scn: Scenario, setup: Setup, truth: Truth, ledger_path: Path) -> dict:
    """Measure ``truth`` with the meters of ``scn`` (its cheats included), settle every interval
    and score the findings against the cheats' truth."""
    c = setup.community
    meters = Meters(scn, c.ids)
    check = Timed(c.physics)
    t_settle = 0.0
    with Ledger(ledger_path, simulated_coordinator_key(scn.seed)) as ledger:
        signers = enrol_simulated(
            ledger, c.ids, c.connection_w, scn.first_interval, scn.seed,
            transformer_rated_w=setup.feeder.transformer_rated_w,
        )  # fmt: skip
        settler = Settler(ledger, c.settlement, physics=check)
        mains = [signers[main_meter(h)] for h in c.ids]
        for t in range(scn.intervals):
            meters.step(t, truth.p_w[t], float(truth.p_trafo_w[t]))
            volts = reported_voltages_mv(meters, t, truth.v_pu[t], float(truth.trafo_v_pu[t]))
            iv = scn.first_interval + t
            readings = sign_interval(iv, mains, signers[TRANSFORMER_METER], meters, volts)
            t0 = time.perf_counter()
            settler.settle(iv, readings)
            t_settle += time.perf_counter() - t0
    cheats = meters.truth()
    n_t, n_h = scn.intervals, len(c.ids)
    named = np.zeros((n_t, n_h), dtype=bool)
    held = np.zeros((n_t, n_h), dtype=bool)
    for t, f in enumerate(check.findings):
        named[t, list(f.named)] = True
        held[t, list(f.held)] = True
    honest = np.ones(n_h, dtype=bool)
    honest[cheats.household] = False
    out: dict[str, object] = {
        "false_flag_share": float(named[:, honest].mean()),
        "honest_held_share": float(held[:, honest].mean()),
        "check_ms": 1000 * check.seconds / n_t,
        "settle_ms": 1000 * t_settle / n_t,
        "held_tokens": _balance(ledger_path, HOLDING, TOKEN) / 1e6,
        "forfeited_tokens": _forfeited(ledger_path) / 1e6,
        "ledger_ok": verify_ledger(ledger_path).ok,
        "detected_share": None,  # an honest run has no cheat to detect
        "named_share": None,
    }
    if len(cheats.household):
        k = int(cheats.household[0])
        cheating = cheats.cheating[:, 0]
        caught = cheating & (named[:, k] | held[:, k])
        n_cheat = int(cheating.sum())
        first = np.flatnonzero(cheats.deviation_w[:, 0] < 0)
        hits = np.flatnonzero(caught)
        stake = cheats.at_stake_wh[:, 0]
        out |= {
            "cheating_intervals": n_cheat,
            "detected_share": float(caught.sum() / n_cheat) if n_cheat else None,
            "named_share": float((caught & named[:, k]).sum() / caught.sum())
            if caught.any()
            else None,
            "delay_intervals": int(hits[0] - first[0]) if len(hits) and len(first) else None,
            "at_stake_wh": round(float(stake[cheating].sum()), 1),
            "caught_wh": round(float(stake[caught].sum()), 1),
        }
    return out


def _forfeited(db: Path) -> int:
    """Tokens forfeited (sent back to issuance from the holding account), micro-tokens."""
    con = sqlite3.connect(db)
    q = (
        "SELECT COALESCE(SUM(amount), 0) FROM entries WHERE account = ? AND asset = ?"
        " AND kind = 'hold_forfeit'"
    )
    v = con.execute(q, (ISSUANCE, TOKEN)).fetchone()[0]
    con.close()
    return int(v)


def _neighbour(scn: Scenario, cheater: str) -> str:
    """The household a copy cheat copies: the one with the most PV on another bus."""
    bus = {h.id: h.bus for h in scn.households}
    pv = [(h.pv.kwp if h.pv else 0.0, h.id) for h in scn.households if bus[h.id] != bus[cheater]]
    return max(pv)[1]


def _cheaters(scn: Scenario, wanted: list[str] | None) -> list[str]:
    """The cheaters to try: those asked for, else one household without PV or battery (if
    any) and the one with the most PV."""
    if wanted:
        return wanted
    bare = [h.id for h in scn.households if not h.pv and not h.battery]
    most_pv = max((h.pv.kwp, h.id) for h in scn.households if h.pv)[1]
    return [*bare[:1], most_pv]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--scenarios", default="community-20,stress-summer")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--cheaters", default="", help="household ids (default: see _cheaters)")
    a = ap.parse_args()
    console = Console(width=200)
    rows: list[dict] = []
    kinds = [k for k in a.kinds.split(",") if k]
    sizes = [float(x) for x in a.sizes.split(",") if x]
    tmp = Path(tempfile.mkdtemp(prefix="gridctl-verification-"))
    for name in a.scenarios.split(","):
        base = load_scenario(ROOT / "sim" / f"{name}.yaml")
        n_t = round(a.days * INTERVALS_PER_DAY)
        scn = Scenario.model_validate({**base.model_dump(), "intervals": n_t, "meter_noise": True})
        t0 = time.perf_counter()
        setup, truth = run_world(scn)
        console.print(f"{name}: world of {n_t} intervals in {time.perf_counter() - t0:.0f} s")
        runs = [("none", 0.0, None)]
        for who in _cheaters(scn, [x for x in a.cheaters.split(",") if x] or None):
            runs += [(k, x, who) for k in kinds for x in sizes]
        for kind, size, who in runs:
            cheat = []
            if who is not None:
                cheat = [{"household": who, "kind": kind, "size_w": size}]
                if kind == "copy":
                    cheat[0]["neighbour"] = _neighbour(scn, who)
            run = Scenario.model_validate({**scn.model_dump(), "cheat": cheat})
            t0 = time.perf_counter()
            out = settle_run(run, setup, truth, tmp / f"{name}-{kind}-{size:.0f}-{who}.sqlite")
            row = {"scenario": name, "cheat": kind, "size_w": size, "cheater": who, **out}
            rows.append(row)
            console.print(
                f"  {kind:8} {size:6.0f} W {who or '-':4}:"
                f" detected {_cell(row.get('detected_share'))}"
                f" named {_cell(row.get('named_share'))}"
                f" false {row['false_flag_share']:.4f} held {row['honest_held_share']:.3f}"
                f" ({time.perf_counter() - t0:.0f} s)"
            )
    table = Table(title=f"verification, {a.days:g} days, class-B households, class-C transformer")
    cols = ["scenario", "cheat", "size_w", "cheater", "detected_share", "named_share",
            "false_flag_share", "honest_held_share", "delay_intervals", "at_stake_wh",
            "caught_wh", "check_ms", "settle_ms", "ledger_ok"]  # fmt: skip
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("scenario", "cheat", "cheater") else "right"
        )
    for r in rows:
        table.add_row(*(_cell(r.get(col)) for col in cols))
    console.print(table)
    console.print(f"targets: {TARGETS} (interval length {interval_hours():g} h)")
    if a.json:
        text = json.dumps(rows, indent=1, default=_json, allow_nan=False)
        a.json.write_text(text + "\n", encoding="utf-8")


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"
    return "-" if v is None else str(v)


def _json(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v))


if __name__ == "__main__":
    main()
