"""Dispatch benchmark: community LP size and times for 10, 100 and 1,000 households x 96 intervals.

    python benchmarks/dispatch.py [--json FILE] [--sizes 10,100,1000] [--solver glop]

For each size: a seeded synthetic community on a SimBench feeder (1,000 homes on an MV+LV grid),
the LP's variables and constraints (unbranched feeder runs merged; 96 intervals planned as 16
quarter hours then hour blocks: ``steps``), build time, solve time, the AC check of the next
interval, the cold plan (build + solve + AC check), AC-check rounds and violations left, and one
interval later the rolling re-plan that runs every interval (``replan_s``: the next 12 intervals,
every household and the feeder, bounded by the previous plan's battery energy and EV charging
at their end, AC-checked) and a full re-plan of all 96 intervals (``replan_full_s``, what runs
every ``replan_every`` intervals). A baseline measured in the same run: pandapower's own AC OPF
on the small feeder for one interval, against gridctl's AC-verified LP for the same interval
(objective gap and time ratio), written to FILE-opf.json next to ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from gridctl.core import interval_hours
from gridctl.dispatch.community import CommunityProblem, build, solve
from gridctl.dispatch.feeder_guard import FeederGuard, FeederLimits
from gridctl.dispatch.fleet import build_fleet, window
from gridctl.dispatch.horizon import DEFAULT_HORIZON
from gridctl.dispatch.rolling import DEFAULT_NEAR, near_problem
from gridctl.grid.feeder import load_feeder
from gridctl.sim.households import build_series
from gridctl.sim.scenario import Scenario

FEEDERS = {10: "1-LV-rural1--0-sw", 100: "1-LV-semiurb5--0-sw", 1000: "1-MVLV-urban-all-0-sw"}
TARIFF = {"import_per_kwh": 0.32, "feed_in_per_kwh": 0.08, "community_per_kwh": 0.2}


def community(n: int, code: str, seed: int = 1) -> tuple[Scenario, object, list[int]]:
    """A synthetic community of ``n`` homes spread over the feeder's load buses."""
    net, profiles = load_feeder(code, None, Path("."))
    lv = net.bus.index[net.bus.vn_kv < 1].to_numpy()
    load_buses = np.intersect1d(net.load.bus.to_numpy(), lv)
    rng = np.random.default_rng(seed)
    buses = (
        load_buses[np.linspace(0, len(load_buses) - 1, n).astype(int)]
        if n <= len(load_buses)
        else rng.choice(load_buses, n)
    )
    hh = []
    for k, b in enumerate(buses):
        h = {
            "id": f"h{k:04d}",
            "bus": int(b),
            "load": {
                "profile": profiles.load.columns[k % 3],
                "annual_kwh": float(rng.integers(25, 60) * 100),
            },
        }
        if k % 5 < 3:
            h["pv"] = {"kwp": float(rng.integers(5, 15)), "profile": profiles.pv.columns[0]}
        if k % 10 < 3:
            h["battery"] = {"kwh": 10.0, "kw": 5.0}
        if k % 10 >= 7:
            h["ev"] = {
                "arrival": "17:30",
                "departure": "07:00",
                "kwh": float(rng.integers(10, 30)),
                "kw": 11.0,
            }
        hh.append(h)
    scn = Scenario.model_validate(
        {"name": f"bench-{n}", "feeder": {"simbench": code}, "start": "2026-05-21T00:00:00Z",
         "intervals": 96, "seed": seed, "tariff": TARIFF, "households": hh}
    )  # fmt: skip
    return scn, net, list(buses)


def bench_size(n: int, solver: str) -> dict:
    warnings.simplefilter("ignore")
    scn, net, buses = community(n, FEEDERS[n])
    profiles = load_feeder(FEEDERS[n], None, Path("."))[1]
    series = build_series(scn, profiles, np.random.default_rng(scn.seed), 2 * 96)
    fleet = build_fleet(scn.households, scn.start, 2 * 96)
    ids = [h.id for h in scn.households]
    guard = FeederGuard(net, np.array(buses), ids, FeederLimits())

    def problem(
        t: int, e_now: np.ndarray, ev_left: np.ndarray
    ) -> tuple[CommunityProblem, np.ndarray]:
        p = CommunityProblem(
            load_w=series.load_fc_w[:, t : t + 96], pv_w=series.pv_fc_w[:, t : t + 96],
            fleet=window(fleet, t, 96, e_now, ev_left), feeder_max_w=np.inf, dt_h=interval_hours(),
            import_per_kwh=TARIFF["import_per_kwh"], feed_in_per_kwh=TARIFF["feed_in_per_kwh"],
        )  # fmt: skip
        return p, series.load_fc_w[:, t : t + 96] * series.tan_phi[:, None]

    t0 = 48  # plan from noon: PV at its height, EVs to come
    p, q = problem(t0, fleet.bat_e0_wh, fleet.ev_need_wh.copy())
    pf = DEFAULT_HORIZON.problem(replace(p, feeder=guard.model(t0, q)))
    tb = time.perf_counter()
    model = build(pf)
    build_s = time.perf_counter() - tb
    ts = time.perf_counter()
    plan = DEFAULT_HORIZON.plan(solve(pf, solver, model), 96)
    solve_s = time.perf_counter() - ts
    ta = time.perf_counter()
    guard.check(t0, plan.net_w[:, 0], q[:, 0], plan.v2_lin[:, 0])
    ac_s = time.perf_counter() - ta
    plan, report = guard.plan(p, t0, q)
    # one interval later: the near re-plan on the full plan's course (what runs every interval),
    # and a full re-plan (what runs every few intervals and on the first)
    p2, q2 = problem(t0 + 1, plan.battery_e_wh[:, 0], fleet.ev_need_wh.copy())
    tr = time.perf_counter()
    near = near_problem(p2, plan, 1, DEFAULT_NEAR)
    _, near_report = guard.plan(near, t0 + 1, q2[:, :DEFAULT_NEAR], horizon=None)
    replan_s = time.perf_counter() - tr
    tf = time.perf_counter()
    guard.plan(p2, t0 + 1, q2)
    replan_full_s = time.perf_counter() - tf
    return {
        "households": n, "intervals": 96, "steps": len(DEFAULT_HORIZON.lengths(96)),
        "feeder": FEEDERS[n], "buses_in_lp": guard.network.n,
        "variables": model.variables, "constraints": model.constraints,
        "build_s": round(build_s, 3), "solve_s": round(solve_s, 3), "ac_check_s": round(ac_s, 3),
        "cold_s": round(build_s + solve_s + ac_s, 3), "replan_s": round(replan_s, 3),
        "replan_intervals": DEFAULT_NEAR, "replan_full_s": round(replan_full_s, 3),
        "rounds": report.rounds, "violations": len(report.remaining),
        "replan_violations": len(near_report.remaining),
    }  # fmt: skip


def opf_baseline() -> dict:
    """One noon interval on the small feeder: pandapower AC OPF vs gridctl's AC-verified LP."""
    import pandapower as pp

    warnings.simplefilter("ignore")
    net, _ = load_feeder(FEEDERS[10], None, Path("."))
    buses = net.load.bus.to_numpy()
    n = len(buses)
    load_w = np.full(n, 400.0)
    pv_w = -np.linspace(12_000, 24_000, n)  # enough PV to push the far end over 1.06 p.u.
    # gridctl: one interval, curtailable PV, voltage and loading limits, AC-verified
    from gridctl.dispatch.community import Fleet

    zeros = np.zeros(n)
    fleet = Fleet(
        zeros,
        zeros,
        zeros,
        zeros,
        np.ones(n),
        np.zeros((n, 1)),
        np.zeros((0, 3), dtype=np.int64),
        np.zeros(0),
        np.full(n, 60_000.0),
    )
    p = CommunityProblem(
        load_w[:, None],
        pv_w[:, None],
        fleet,
        np.inf,
        0.25,
        TARIFF["import_per_kwh"],
        TARIFF["feed_in_per_kwh"],
    )
    guard = FeederGuard(
        net, buses, [f"h{k}" for k in range(n)], FeederLimits(margin_v_pu=0.0, rounds=10)
    )
    tg = time.perf_counter()
    plan, report = guard.plan(p, 0, np.zeros((n, 1)))
    g_s = time.perf_counter() - tg
    guard.ac.run(plan.net_w[:, 0], np.zeros(n))
    g_export_w = float(-guard.ac.net.res_ext_grid.p_mw.sum() * 1e6)
    # pandapower OPF: PV as controllable sgens valued at feed-in, the slack's import at the tariff
    opf = guard.ac.net
    opf.load["in_service"] = False
    for k, b in enumerate(buses):
        pp.create_load(opf, b, p_mw=load_w[k] / 1e6, controllable=False)
        pp.create_sgen(
            opf,
            b,
            p_mw=-pv_w[k] / 1e6,
            max_p_mw=-pv_w[k] / 1e6,
            min_p_mw=0.0,
            max_q_mvar=0.0,
            min_q_mvar=0.0,
            controllable=True,
        )
    opf.bus["min_vm_pu"], opf.bus["max_vm_pu"] = 0.94, 1.06
    opf.line["max_loading_percent"] = 100.0
    opf.trafo["max_loading_percent"] = 100.0
    opf.ext_grid["controllable"] = True
    opf.ext_grid["max_p_mw"], opf.ext_grid["min_p_mw"] = 10.0, -10.0
    opf.ext_grid["max_q_mvar"], opf.ext_grid["min_q_mvar"] = 10.0, -10.0
    # cost per MW at the slack = import price (negative flow = export earns feed-in: linear)
    pp.create_poly_cost(
        opf, opf.ext_grid.index[0], "ext_grid", cp1_eur_per_mw=TARIFF["feed_in_per_kwh"] * 1000
    )
    to = time.perf_counter()
    pp.runopp(opf, numba=False, init="pf", calculate_voltage_angles=False)
    o_s = time.perf_counter() - to
    o_export_w = float(-opf.res_ext_grid.p_mw.sum() * 1e6)
    return {
        "gridctl_export_kw": round(float(g_export_w) / 1000, 2),
        "opf_export_kw": round(o_export_w / 1000, 2),
        "objective_gap_pct": round(100 * (o_export_w - g_export_w) / o_export_w, 2),
        "gridctl_s": round(g_s, 3), "opf_s": round(o_s, 3), "time_ratio": round(g_s / o_s, 3),
        "gridctl_rounds": report.rounds, "gridctl_violations": len(report.remaining),
        "opf_max_vm_pu": round(float(opf.res_bus.vm_pu.max()), 4),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--solver", default="highs", help="highs, glop or pdlp")
    args = ap.parse_args()
    console = Console(width=200)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        console.print(f"benchmarking {n} households ...")
        rows.append(bench_size(n, args.solver))
    table = Table(title=f"community dispatch, 96 intervals, solver {args.solver}")
    keys = [
        "households",
        "buses_in_lp",
        "variables",
        "constraints",
        "steps",
        "build_s",
        "solve_s",
        "ac_check_s",
        "cold_s",
        "replan_s",
        "replan_full_s",
        "rounds",
        "violations",
    ]
    for k in keys:
        table.add_column(k, justify="right")
    for r in rows:
        table.add_row(*(str(r[k]) for k in keys))
    console.print(table)
    base = opf_baseline()
    t2 = Table(
        title="one noon interval on the small feeder: gridctl LP + AC check vs pandapower AC OPF"
    )
    for k in base:
        t2.add_column(k, justify="right")
    t2.add_row(*(str(v) for v in base.values()))
    console.print(t2)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        opf_file = args.json.with_name(args.json.stem + "-opf.json")
        opf_file.write_text(json.dumps(base, indent=2) + "\n")


if __name__ == "__main__":
    main()
