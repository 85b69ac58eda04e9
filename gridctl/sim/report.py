"""HTML report of a simulation run, with PNG plots beside it."""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from gridctl.core import INTERVAL_S, MICRO, W_PER_KW, interval_hours, interval_start
from gridctl.settlement import flex_records as flex_rec
from gridctl.sim.engine import SimResult

PLOTS = {
    "feeder_power.png": "Feeder power at the transformer",
    "voltage.png": "Lowest and highest bus voltage",
    "households.png": "Energy shared and received, tokens earned, per household",
}
FLEX_PLOT = "flexibility.png"
"""Written only for a run with flexibility events."""
FLEX_TITLE = "Flexibility events: the households' grid energy against the recorded baseline"


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(tz="UTC", maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)


def _feeder_power(r: SimResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    ax.plot(r.times, r.p_trafo_w / W_PER_KW, label="transformer (+ import / − export)", lw=2)
    ax.plot(r.times, r.demand_w.sum(1) / W_PER_KW, label="demand (base load + EV)", lw=1)
    ax.plot(r.times, r.pv_w.sum(1) / W_PER_KW, label="PV", lw=1)
    ax.fill_between(
        r.times,
        0,
        r.shared_wh / W_PER_KW / interval_hours(),
        alpha=0.3,
        label="shared in the pool",
        step="post",
    )
    if np.isfinite(r.feeder_export_max_w).any():
        ax.step(r.times, -r.feeder_export_max_w / W_PER_KW, where="post", color="tab:red",
                ls="--", label="grid operator's export limit")  # fmt: skip
    if np.isfinite(r.feeder_import_max_w).any():
        ax.step(r.times, r.feeder_import_max_w / W_PER_KW, where="post", color="tab:purple",
                ls="--", label="grid operator's import limit")  # fmt: skip
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("power (kW, load convention)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside, over no data
    _time_axis(ax)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _voltage(r: SimResult, path: Path) -> None:
    lim = r.scenario.limits
    fig, ax = plt.subplots(figsize=(10, 3.5), layout="constrained")
    ax.plot(r.times, r.vm_max_pu, label="highest bus", color="tab:red")
    ax.plot(r.times, r.vm_min_pu, label="lowest bus", color="tab:blue")
    for v in (lim.v_min_pu, lim.v_max_pu):
        ax.axhline(v, color="k", ls="--", lw=0.8)
    ax.set_ylabel("voltage (p.u.)")
    ax.set_ylim(
        min(lim.v_min_pu, r.vm_min_pu.min()) - 0.01, max(lim.v_max_pu, r.vm_max_pu.max()) + 0.01
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside, over no data
    _time_axis(ax)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _households(r: SimResult, path: Path) -> None:
    x = np.arange(len(r.household_ids))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, layout="constrained")
    ax1.bar(x - 0.2, r.supplied_wh / W_PER_KW, width=0.4, label="shared (supplied to the pool)")
    ax1.bar(x + 0.2, r.received_wh / W_PER_KW, width=0.4, label="received from the pool")
    ax1.set_ylabel("energy (kWh)")
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    ax2.bar(x, r.tokens_micro / MICRO, color="tab:green")
    ax2.set_ylabel("tokens earned")
    ax2.set_xticks(x, r.household_ids)
    ax2.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _flexibility(r: SimResult, path: Path) -> bool:
    """Plot each flexibility event's baseline, the plan with the event and the verified
    metered grid energy of the households over its window, kW; False (nothing written) for a
    run without events."""
    con = sqlite3.connect(f"file:{r.ledger_path}?mode=ro", uri=True)
    try:
        events = flex_rec.events(con)
        if not events:
            return False
        per_h = W_PER_KW * interval_hours()  # Wh in an interval -> kW
        fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
        for ev in events:
            base = flex_rec.baselines(con, ev.event)
            measured = flex_rec.verified_net_wh(
                con, sorted({b.household for b in base}), ev.first, ev.last
            )
            got: dict[int, int] = {}
            for (_, i), wh in measured.items():
                got[i] = got.get(i, 0) + wh
            ivs = sorted({b.interval for b in base})
            t = [interval_start(i) for i in ivs]
            ax.step(t, [sum(b.baseline_wh for b in base if b.interval == i) / per_h for i in ivs],
                    where="post", label=f"{ev.event}: baseline (without the event)")  # fmt: skip
            ax.step(t, [sum(b.planned_wh for b in base if b.interval == i) / per_h for i in ivs],
                    where="post", ls="--", label=f"{ev.event}: plan with the event")  # fmt: skip
            ax.step(t, [got.get(i, np.nan) / per_h for i in ivs], where="post", lw=2,
                    label=f"{ev.event}: verified metered")  # fmt: skip
            done = flex_rec.deliveries(con, ev.event)
            if done:
                kwh = sum(d.delivered_wh for d in done) / W_PER_KW
                paid = sum(d.payment_micro for d in done) / MICRO
                ax.set_title(f"{ev.event}: {kwh:.1f} kWh delivered, {paid:.2f} paid", fontsize=9)
    finally:
        con.close()
    ax.set_ylabel("households' grid power (kW, load convention)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    _time_axis(ax)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(r: SimResult, kpi: dict[str, float | int | str], out: Path) -> Path:
    """Write ``report.html`` and its PNG plots into ``out``; returns the HTML path."""
    for name, draw in zip(PLOTS, (_feeder_power, _voltage, _households), strict=True):
        draw(r, out / name)
    plots = dict(PLOTS)
    if _flexibility(r, out / FLEX_PLOT):
        plots[FLEX_PLOT] = FLEX_TITLE
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in kpi.items()
    )
    figs = "\n".join(
        f'<figure><img src="{n}" alt="{html.escape(t)}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for n, t in plots.items()
    )
    scn = r.scenario
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gridctl report: {html.escape(scn.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 2px 12px; border-bottom: 1px solid #ddd; }}
th {{ text-align: left; font-weight: 500; }} td {{ font-family: monospace; }}
img {{ max-width: 100%; }} figure {{ margin: 2em 0; }} figcaption {{ color: #555; }}
</style></head><body>
<h1>gridctl simulation: {html.escape(scn.name)}</h1>
<p>{len(r.household_ids)} households, {len(r.times)} intervals of {INTERVAL_S // 60} min from
{r.times[0]:%Y-%m-%d %H:%M} UTC, seed {scn.seed}. Powers use the load convention
(positive = drawn from the grid).</p>
<h2>Key figures</h2>
<table>{rows}</table>
<h2>Plots</h2>
{figs}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
