"""Community dispatch: one multi-period LP for all households (HiGHS by default).

The community minimises what it pays the grid: energy one household exports is used by
another before anything is exported upstream, because the tariff makes feed-in worth less
than import. Batteries, EV charging and PV curtailment are scheduled over the horizon;
household connections and the transformer are limits. The matrices are built with
``scipy.sparse`` block by block, never with loops over households x intervals.

Variable blocks (each household-major, index ``h * T + t``):
``curt`` PV curtailed (W, ≥ 0), ``bch``/``bdis`` battery charge/discharge (W, ≥ 0),
``e`` battery energy at the end of the interval (Wh), ``ev`` EV charging (W, ≥ 0),
``net`` household grid power (W, load convention); then per interval ``gimp``/``gexp``
transformer import/export within its rating and ``gover`` import above it (W, ≥ 0,
heavily penalised so the model is never infeasible); then ``unmet`` per EV session (Wh);
then, with a feeder model, per bus and interval (bus-major) the branch flow ``flow`` into the
bus (kW, load convention) and ``v``, the squared voltage magnitude (pu^2), linked by the
LinDistFlow rows of ``gridctl.grid.network`` so that a household touches only its own bus;
then, under the "kwp" fairness rule, per interval the ``share`` of its PV every household gives up.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import highspy
import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb

from gridctl.core import W_PER_KW, DispatchError
from gridctl.grid.network import W_PER_PU, RadialNetwork

CYCLE_COST_PER_KWH = 0.002
"""Battery throughput cost, currency per kWh, so batteries do not cycle for nothing."""
CURTAIL_COST_PER_KWH = 0.001
"""Cost of curtailing PV even when feed-in pays nothing, currency per kWh."""
UNMET_EV_COST_PER_KWH = 10.0
"""Penalty for EV energy not delivered by departure, currency per kWh."""
OVERLOAD_COST_PER_KWH = 100.0
"""Penalty for transformer import above its rating, currency per kWh."""

Fairness = Literal["bus", "kwp"]
"""How the plan shares curtailment between households with PV: "bus", households at the same
bus give up the same share of their PV (between buses the LP curtails where it helps the feeder
most); "kwp", every household of the community gives up the same share of its PV, so curtailment
falls on each in proportion to its installed PV."""
FAIRNESS_RULES: tuple[Fairness, ...] = get_args(Fairness)


@dataclass(frozen=True)
class Fleet:
    """Device parameters, shape (H,) unless noted; zeros for devices a household lacks.

    bat_e_min_wh, bat_e_max_wh, bat_e0_wh: battery energy limits and start, Wh.
    bat_p_max_w: battery power limit, W. bat_eta: one-way efficiency.
    ev_max_w: (H, T) EV charging limit, 0 while no car is plugged in, W.
    ev_session: (S, 3) int (household, first interval, end interval exclusive).
    ev_need_wh: (S,) energy each session needs, Wh.
    conn_max_w: connection limit (fuse, envelope), W; bounds import and export.
    bat_e_end_wh: floor on battery energy at the end of the horizon, Wh (None: the start energy).
    """

    bat_e_min_wh: np.ndarray
    bat_e_max_wh: np.ndarray
    bat_e0_wh: np.ndarray
    bat_p_max_w: np.ndarray
    bat_eta: np.ndarray
    ev_max_w: np.ndarray
    ev_session: np.ndarray
    ev_need_wh: np.ndarray
    conn_max_w: np.ndarray
    bat_e_end_wh: np.ndarray | None = None


@dataclass(frozen=True)
class FeederModel:
    """Feeder constraints for the LP, arrays (N, T) over buses in tree order and intervals.

    network: the radial tree. household_pos: tree position of each household's bus, (H,).
    q_w: forecast reactive power per household, (H, T), var, load convention.
    v_min_pu, v_max_pu: voltage band (after any safety margin), p.u.
    offset_v2: AC correction added to the linear |V|^2 (pu^2), calibrated by power flows.
    flow_max_kw: limit on the flow into each bus (its feeding branch), kW.
    """

    network: RadialNetwork
    household_pos: np.ndarray
    q_w: np.ndarray
    v_min_pu: float
    v_max_pu: float
    offset_v2: np.ndarray
    flow_max_kw: np.ndarray


@dataclass(frozen=True)
class EnvelopeLimits:
    """Grid-operator envelopes over the horizon, W (≥ 0; ``inf``: none).

    import_w / export_w: each household's connection point, (H, T).
    feeder_import_w / feeder_export_w: the transformer, (T,).
    """

    import_w: np.ndarray
    export_w: np.ndarray
    feeder_import_w: np.ndarray
    feeder_export_w: np.ndarray

    def first(self, n: int) -> EnvelopeLimits:
        """The first ``n`` intervals."""
        return self.map(lambda x: x[..., :n])

    def map(self, f: Callable[[np.ndarray], np.ndarray]) -> EnvelopeLimits:
        """``f`` applied along time to every series (e.g. block minima of a coarser horizon)."""
        return EnvelopeLimits(
            f(self.import_w), f(self.export_w), f(self.feeder_import_w), f(self.feeder_export_w)
        )

    def one(self, h: int) -> EnvelopeLimits:
        """Household ``h`` alone, its own connection as its only grid (no feeder limit)."""
        none = np.full(self.feeder_import_w.shape, np.inf)
        return EnvelopeLimits(self.import_w[h : h + 1], self.export_w[h : h + 1], none, none)


@dataclass(frozen=True)
class CommunityProblem:
    """Inputs of the community dispatch; arrays are (H, T), load convention.

    load_w: forecast base load, W (≥ 0).
    pv_w: forecast PV output, W (≤ 0).
    fleet: device and connection limits.
    feeder_max_w: transformer limit, W.
    feeder: network constraints (voltages, branch flows), or None for none.
    dt_h: length of each step, h: one number, or (T,) when steps differ (a coarser far horizon).
    import_per_kwh, feed_in_per_kwh: grid prices, currency per kWh.
    fairness: how curtailment is shared (``Fairness``).
    envelope: the grid operator's limits (None: none); hard limits, like the connections.
    """

    load_w: np.ndarray
    pv_w: np.ndarray
    fleet: Fleet
    feeder_max_w: float
    dt_h: float | np.ndarray
    import_per_kwh: float
    feed_in_per_kwh: float
    feeder: FeederModel | None = None
    fairness: Fairness = "bus"
    envelope: EnvelopeLimits | None = None


@dataclass(frozen=True)
class Plan:
    """The dispatch result; (H, T) arrays in W, load convention.

    battery_w: battery power (> 0 charging). ev_w: EV charging (≥ 0).
    curtail_w: PV curtailment (≥ 0, the amount PV output is reduced by).
    net_w: household grid power. grid_w: transformer power per interval, shape (T,).
    ev_unmet_wh: energy each EV session misses, Wh, shape (S,). cost: objective, currency.
    battery_e_wh: battery energy at the end of each interval, Wh.
    v2_lin / flow_kw: with a feeder model, the linear |V|^2 (without offset) and branch flows
    (kW) per bus and interval, (N, T); else None.
    """

    battery_w: np.ndarray
    ev_w: np.ndarray
    curtail_w: np.ndarray
    net_w: np.ndarray
    grid_w: np.ndarray
    ev_unmet_wh: np.ndarray
    cost: float
    battery_e_wh: np.ndarray | None = None
    v2_lin: np.ndarray | None = None
    flow_kw: np.ndarray | None = None


def held_w(plan: Plan, j: int) -> np.ndarray:
    """Household grid powers of planned interval j as export envelopes hold them, W, (H,).

    An envelope only stops export: a household planned to import while its own PV is curtailed
    lets that PV supply it instead, and imports less (down to nothing) than planned.
    """
    net_w, curtail_w = plan.net_w[:, j], plan.curtail_w[:, j]
    return np.where(net_w > 0, np.maximum(net_w - curtail_w, 0.0), net_w)


class _Columns:
    """Named column blocks of the LP, in order."""

    def __init__(self, sizes: dict[str, int]):
        self.start: dict[str, int] = {}
        k = 0
        for name, n in sizes.items():
            self.start[name] = k
            k += n
        self.sizes = sizes
        self.total = k

    def rows(self, n_rows: int, parts: dict[str, sp.spmatrix]) -> sp.csr_matrix:
        """Rows with the given blocks placed at their columns, zeros elsewhere."""
        blocks = [parts.get(name, sp.csr_matrix((n_rows, n))) for name, n in self.sizes.items()]
        return sp.hstack(blocks, format="csr")

    def take(self, x: np.ndarray, name: str) -> np.ndarray:
        """The values of one block."""
        return x[self.start[name] : self.start[name] + self.sizes[name]]


def _layout(p: CommunityProblem) -> _Columns:
    n_h, n_t = p.load_w.shape
    n = n_h * n_t
    sizes = {name: n for name in ("curt", "bch", "bdis", "e", "ev", "net")}
    sizes |= {"gimp": n_t, "gexp": n_t, "gover": n_t, "unmet": len(p.fleet.ev_need_wh)}
    if p.feeder is not None:
        n_b = p.feeder.network.n * n_t
        sizes |= {"flow": n_b, "v": n_b}
    if p.fairness == "kwp":
        sizes["share"] = n_t
    if _export_limited(p).any():
        sizes["hexp"] = n
    return _Columns(sizes)


def _export_limited(p: CommunityProblem) -> np.ndarray:
    """Intervals with an export limit on the feeder, (T,) bool."""
    if p.envelope is None:
        return np.zeros(p.load_w.shape[1], dtype=bool)
    return np.isfinite(p.envelope.feeder_export_w)


def _step_h(p: CommunityProblem) -> np.ndarray:
    """Length of each step, h, (T,)."""
    return np.broadcast_to(np.asarray(p.dt_h, dtype=float), (p.load_w.shape[1],))


def _household_rows(p: CommunityProblem, cols: _Columns) -> tuple[list, list, list]:
    n_h, n_t = p.load_w.shape
    n = n_h * n_t
    n_s = len(p.fleet.ev_need_wh)
    eye_n = sp.identity(n, format="csr")
    eta = np.repeat(p.fleet.bat_eta, n_t)
    step_h = _step_h(p)
    dt = np.tile(step_h, n_h)
    mats, lo, hi = [], [], []

    # household balance: net - curt - bch + bdis - ev = load + pv
    rhs = (p.load_w + p.pv_w).ravel()
    mats.append(
        cols.rows(n, {"net": eye_n, "curt": -eye_n, "bch": -eye_n, "bdis": eye_n, "ev": -eye_n})
    )
    lo.append(rhs)
    hi.append(rhs)

    # battery energy: e[t] - e[t-1] - eta dt bch + dt/eta bdis = e0 at t == 0, else 0
    shift = sp.kron(sp.identity(n_h), sp.eye(n_t, k=-1))
    mats.append(
        cols.rows(n, {"e": eye_n - shift, "bch": sp.diags(-eta * dt), "bdis": sp.diags(dt / eta)})
    )
    rhs = np.zeros((n_h, n_t))
    rhs[:, 0] = p.fleet.bat_e0_wh
    lo.append(rhs.ravel())
    hi.append(rhs.ravel())

    # terminal energy not below the floor (by default the start)
    last = sp.csr_matrix(
        (np.ones(n_h), (np.arange(n_h), np.arange(n_h) * n_t + n_t - 1)), shape=(n_h, n)
    )
    mats.append(cols.rows(n_h, {"e": last}))
    end = p.fleet.bat_e_end_wh
    lo.append(p.fleet.bat_e0_wh if end is None else end)
    hi.append(np.full(n_h, np.inf))

    # transformer: sum_h net - gimp - gover + gexp = 0
    eye_t = sp.identity(n_t)
    sum_h = sp.kron(np.ones((1, n_h)), eye_t)
    mats.append(cols.rows(n_t, {"net": sum_h, "gimp": -eye_t, "gexp": eye_t, "gover": -eye_t}))
    lo.append(np.zeros(n_t))
    hi.append(np.zeros(n_t))

    # EV sessions: sum of ev * step length over the window + unmet >= need
    hh, t0, t1 = (p.fleet.ev_session[:, k] for k in range(3)) if n_s else (np.array([], int),) * 3
    rows = np.repeat(np.arange(n_s), t1 - t0)
    ev_cols = np.concatenate(
        [h * n_t + np.arange(a, b) for h, a, b in zip(hh, t0, t1, strict=True)] or [[]]
    ).astype(np.int64)
    ev_sum = sp.csr_matrix((dt[ev_cols], (rows, ev_cols)), shape=(n_s, n))
    mats.append(cols.rows(n_s, {"ev": ev_sum, "unmet": sp.identity(n_s)}))
    lo.append(p.fleet.ev_need_wh)
    hi.append(np.full(n_s, np.inf))
    return mats, lo, hi


def _feeder_rows(p: CommunityProblem, cols: _Columns) -> tuple[list, list, list]:
    """LinDistFlow rows: flow conservation and voltage drop per bus and interval."""
    f = p.feeder
    assert f is not None
    net = f.network
    n_h, n_t = p.load_w.shape
    n_b = net.n
    eye_t = sp.identity(n_t)
    kids = net.parent >= 0
    child = sp.csr_matrix(
        (np.ones(kids.sum()), (net.parent[kids], np.flatnonzero(kids))), shape=(n_b, n_b)
    )
    at_bus = sp.csr_matrix((np.ones(n_h), (f.household_pos, np.arange(n_h))), shape=(n_b, n_h))
    eye_b = sp.identity(n_b)
    # flow_k - sum of children's flows - households at k (kW) = 0
    cons = cols.rows(
        n_b * n_t,
        {"flow": sp.kron(eye_b - child, eye_t), "net": -sp.kron(at_bus, eye_t) / W_PER_KW},
    )
    # v_k - v_parent + 2 r_k flow_k = -2 x_k Q_k (bus 0: v_0 = v_root^2)
    q_bus = np.zeros((n_b, n_t))
    np.add.at(q_bus, f.household_pos, f.q_w)
    q_flow_pu = net.subtree_sum(q_bus) / W_PER_PU
    drop = sp.kron(eye_b - child.T, eye_t)
    volt = cols.rows(
        n_b * n_t,
        {"v": drop, "flow": sp.kron(sp.diags(2.0 * net.r_pu * W_PER_KW / W_PER_PU), eye_t)},
    )
    rhs = -2.0 * net.x_pu[:, None] * q_flow_pu
    rhs[0, :] = net.v_root_pu**2
    zeros = np.zeros(n_b * n_t)
    return [cons, volt], [zeros, rhs.ravel()], [zeros, rhs.ravel()]


def _bus_fairness_rows(p: CommunityProblem, cols: _Columns) -> tuple[list, list, list]:
    """Equal curtailment share for households at the same bus (none without a feeder model).

    The fairness rule: households at the same electrical position (the same bus) see the
    same voltages and load the same branches, so none of them should be curtailed more than
    its neighbour in proportion to its PV: curt_a / pv_a = curt_b / pv_b every interval.
    Between positions the LP curtails where it helps the feeder most (the far end first).
    """
    f = p.feeder
    if f is None:
        return [], [], []
    n_h, n_t = p.load_w.shape
    has_pv = (p.pv_w < 0).any(axis=1)
    pairs = []
    for b in np.unique(f.household_pos):
        members = np.flatnonzero((f.household_pos == b) & has_pv)
        pairs += list(itertools.pairwise(members))
    if not pairs:
        return [], [], []
    a_h, b_h = np.array(pairs).T
    n_r = len(pairs) * n_t
    rows = np.arange(n_r)
    t = np.tile(np.arange(n_t), len(pairs))
    ha, hb = np.repeat(a_h, n_t), np.repeat(b_h, n_t)
    coeff = sp.csr_matrix(
        (
            np.concatenate([-p.pv_w[hb, t], p.pv_w[ha, t]]),  # curt_a |pv_b| - curt_b |pv_a| = 0
            (np.concatenate([rows, rows]), np.concatenate([ha * n_t + t, hb * n_t + t])),
        ),
        shape=(n_r, n_h * n_t),
    )
    zeros = np.zeros(n_r)
    return [cols.rows(n_r, {"curt": coeff})], [zeros], [zeros]


def _kwp_fairness_rows(p: CommunityProblem, cols: _Columns) -> tuple[list, list, list]:
    """Equal curtailment share for every household: curt = share |pv| wherever pv < 0.

    One share per interval, not a chain of pairs, so a household without sun in an interval
    (curtailment bounded to 0 there) does not break the equality between the others.
    """
    n_h, n_t = p.load_w.shape
    h, t = np.nonzero(p.pv_w < 0)
    n_r = len(h)
    rows = np.arange(n_r)
    curt = sp.csr_matrix((np.ones(n_r), (rows, h * n_t + t)), shape=(n_r, n_h * n_t))
    share = sp.csr_matrix((p.pv_w[h, t], (rows, t)), shape=(n_r, n_t))
    zeros = np.zeros(n_r)
    return [cols.rows(n_r, {"curt": curt, "share": share})], [zeros], [zeros]


_FAIRNESS_ROWS = {"bus": _bus_fairness_rows, "kwp": _kwp_fairness_rows}


def _feeder_export_rows(p: CommunityProblem, cols: _Columns) -> tuple[list, list, list]:
    """A feeder export limit bounds the households' exports, not the community's net export:
    hexp ≥ -net per household, sum_h hexp ≤ limit in each limited interval.

    Each household is then told to export no more than planned, and the limit holds whatever
    the importers do: a neighbour planned to take 2 kW may take none (its load below the
    forecast, or its own PV uncurtailed to cover it), and the net would break a limit that only
    bound the sum."""
    on = _export_limited(p)
    if not on.any():
        return [], [], []
    assert p.envelope is not None
    n_h, n_t = p.load_w.shape
    t_on = np.flatnonzero(on)
    idx = (np.arange(n_h)[:, None] * n_t + t_on[None, :]).ravel()
    m = len(idx)
    pick = sp.csr_matrix((np.ones(m), (np.arange(m), idx)), shape=(m, n_h * n_t))
    floor = cols.rows(m, {"hexp": pick, "net": pick})  # hexp + net ≥ 0
    total = sp.kron(np.ones((1, n_h)), sp.identity(n_t, format="csr")[t_on])
    cap = cols.rows(len(t_on), {"hexp": total})
    return (
        [floor, cap],
        [np.zeros(m), np.zeros(len(t_on))],
        [np.full(m, np.inf), p.envelope.feeder_export_w[t_on]],
    )


def _bounds_and_cost(
    p: CommunityProblem, cols: _Columns
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_h, n_t = p.load_w.shape
    shape = (n_h, n_t)
    per_wh = _step_h(p) / W_PER_KW  # currency per kWh -> currency per W held one step
    per_wh_hh = np.tile(per_wh, n_h)
    fl = p.fleet
    conn = np.broadcast_to(fl.conn_max_w[:, None], shape)
    bat = np.broadcast_to(fl.bat_p_max_w[:, None], shape)
    zeros = np.zeros(shape)
    lb = np.zeros(cols.total)
    ub = np.full(cols.total, np.inf)
    c = np.zeros(cols.total)

    def put(name: str, low, high, cost=0.0) -> None:
        sl = slice(cols.start[name], cols.start[name] + cols.sizes[name])
        lb[sl] = np.ravel(low)
        ub[sl] = np.ravel(high)
        c[sl] = np.broadcast_to(cost, (cols.sizes[name],))

    put("curt", zeros, -p.pv_w, CURTAIL_COST_PER_KWH * per_wh_hh)
    put("bch", zeros, bat, CYCLE_COST_PER_KWH * per_wh_hh / 2)
    put("bdis", zeros, bat, CYCLE_COST_PER_KWH * per_wh_hh / 2)
    put(
        "e",
        np.broadcast_to(fl.bat_e_min_wh[:, None], shape),
        np.broadcast_to(fl.bat_e_max_wh[:, None], shape),
    )
    put("ev", zeros, fl.ev_max_w)
    env = p.envelope
    imp_max = conn if env is None else np.minimum(conn, env.import_w)
    exp_max = conn if env is None else np.minimum(conn, env.export_w)
    feeder_imp = np.full(n_t, p.feeder_max_w)
    feeder_exp = np.full(n_t, p.feeder_max_w)
    if env is not None:
        feeder_imp = np.minimum(feeder_imp, env.feeder_import_w)
        feeder_exp = np.minimum(feeder_exp, env.feeder_export_w)
    # a base load above the fuse or the import envelope is a fact, not a choice; export can
    # always be curtailed, import above the feeder's limit is allowed at a penalty (gover)
    put("net", -exp_max, np.maximum(imp_max, p.load_w))
    put("gimp", 0.0, feeder_imp, p.import_per_kwh * per_wh)
    put("gexp", 0.0, feeder_exp, -p.feed_in_per_kwh * per_wh)
    put("gover", 0.0, np.inf, OVERLOAD_COST_PER_KWH * per_wh)
    put("unmet", 0.0, np.inf, UNMET_EV_COST_PER_KWH / W_PER_KW)
    if p.feeder is not None:
        f = p.feeder
        put("flow", -f.flow_max_kw, f.flow_max_kw)
        put("v", f.v_min_pu**2 - f.offset_v2, f.v_max_pu**2 - f.offset_v2)
        root = slice(cols.start["v"], cols.start["v"] + n_t)  # the slack holds its voltage
        lb[root] = ub[root] = f.network.v_root_pu**2
    if p.fairness == "kwp":
        put("share", 0.0, np.ones(n_t))
    if "hexp" in cols.sizes:
        put("hexp", 0.0, np.inf)
    return lb, ub, c


@dataclass(frozen=True)
class Model:
    """A built LP (min c·x, lo ≤ A x ≤ hi, lb ≤ x ≤ ub) and where each block's columns are."""

    a: sp.csc_matrix
    lo: np.ndarray
    hi: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    c: np.ndarray
    cols: _Columns

    @property
    def variables(self) -> int:
        """Number of columns."""
        return self.a.shape[1]

    @property
    def constraints(self) -> int:
        """Number of rows."""
        return self.a.shape[0]


def build(p: CommunityProblem) -> Model:
    """Assemble the LP of ``p`` (sparse matrices, no loops over households x intervals)."""
    cols = _layout(p)
    mats, lo, hi = _household_rows(p, cols)
    feeder_rows = (_feeder_rows,) if p.feeder is not None else ()
    for rows_fn in (*feeder_rows, _FAIRNESS_ROWS[p.fairness], _feeder_export_rows):
        fm, flo, fhi = rows_fn(p, cols)
        mats, lo, hi = mats + fm, lo + flo, hi + fhi
    lb, ub, c = _bounds_and_cost(p, cols)
    a = sp.vstack(mats, format="csc")
    return Model(a, np.concatenate(lo), np.concatenate(hi), lb, ub, c, cols)


DEFAULT_SOLVER = "highs"
"""Chosen by ``benchmarks/dispatch.py``: at 100 homes x 96 intervals HiGHS solved in 1.3 s,
GLOP in 2.1 s and PDLP in 11.5 s on this machine. HiGHS runs through its own Python
interface (highspy): at 1,000 homes the detour through OR-Tools' model cost about 20 %."""


@functools.cache
def _quiet_highs_banner() -> None:
    """HiGHS prints a banner on standard output when its first instance is made, before any
    option can silence it; make that instance with standard output closed, so that output a
    user parses (``gridctl sim --json``) stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve_highs(m: Model) -> tuple[np.ndarray, float]:
    _quiet_highs_banner()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = m.variables, m.constraints
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = m.c, m.lb, m.ub
    lp.row_lower_, lp.row_upper_ = m.lo, m.hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = (
        m.a.indptr,
        m.a.indices,
        m.a.data,
    )
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise DispatchError(f"community dispatch not solved: {h.modelStatusToString(status)}")
    return np.asarray(h.getSolution().col_value), float(h.getInfo().objective_function_value)


def _solve_ortools(m: Model, solver: str) -> tuple[np.ndarray, float]:
    lp = mb.Model()
    lp.helper.fill_model_from_sparse_data(m.lb, m.ub, m.c, m.lo, m.hi, m.a.tocsr())
    engine = mb.Solver(solver)
    if not engine.solver_is_supported():
        raise DispatchError(f"LP solver {solver!r} is not available in this OR-Tools build")
    status = engine.solve(lp)
    if status != mb.SolveStatus.OPTIMAL:
        raise DispatchError(f"community dispatch not solved: {status.name}")
    return engine.values(lp.get_variables()).to_numpy(), float(engine.objective_value)


def solve(p: CommunityProblem, solver: str = DEFAULT_SOLVER, model: Model | None = None) -> Plan:
    """Solve the community dispatch over the whole horizon of ``p``.

    solver: "highs" (highspy), or an OR-Tools model_builder backend ("glop", "pdlp").
    model: ``build(p)`` when already built. Raises DispatchError without an optimum.
    """
    n_h, n_t = p.load_w.shape
    model = model or build(p)
    cols = model.cols
    x, cost = _solve_highs(model) if solver == "highs" else _solve_ortools(model, solver)

    def hh(name: str) -> np.ndarray:
        return cols.take(x, name).reshape(n_h, n_t)

    n_b = p.feeder.network.n if p.feeder is not None else 0
    return Plan(
        battery_w=hh("bch") - hh("bdis"),
        ev_w=hh("ev"),
        curtail_w=hh("curt"),
        net_w=hh("net"),
        grid_w=cols.take(x, "gimp") - cols.take(x, "gexp") + cols.take(x, "gover"),
        ev_unmet_wh=cols.take(x, "unmet"),
        cost=cost,
        battery_e_wh=hh("e"),
        v2_lin=cols.take(x, "v").reshape(n_b, n_t) if n_b else None,
        flow_kw=cols.take(x, "flow").reshape(n_b, n_t) if n_b else None,
    )
