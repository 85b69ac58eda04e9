"""Community dispatch: one multi-period LP for all households (OR-Tools GLOP).

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
heavily penalised so the model is never infeasible); then ``unmet`` per EV session (Wh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb

from gridctl.core import DispatchError

CYCLE_COST_PER_KWH = 0.002
"""Battery throughput cost, currency per kWh, so batteries do not cycle for nothing."""
CURTAIL_COST_PER_KWH = 0.001
"""Cost of curtailing PV even when feed-in pays nothing, currency per kWh."""
UNMET_EV_COST_PER_KWH = 10.0
"""Penalty for EV energy not delivered by departure, currency per kWh."""
OVERLOAD_COST_PER_KWH = 100.0
"""Penalty for transformer import above its rating, currency per kWh."""


@dataclass(frozen=True)
class Fleet:
    """Device parameters, shape (H,) unless noted; zeros for devices a household lacks.

    bat_e_min_wh, bat_e_max_wh, bat_e0_wh: battery energy limits and start, Wh.
    bat_p_max_w: battery power limit, W. bat_eta: one-way efficiency.
    ev_max_w: (H, T) EV charging limit, 0 while no car is plugged in, W.
    ev_session: (S, 3) int (household, first interval, end interval exclusive).
    ev_need_wh: (S,) energy each session needs, Wh.
    conn_max_w: connection limit (fuse, envelope), W; bounds import and export.
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


@dataclass(frozen=True)
class CommunityProblem:
    """Inputs of the community dispatch; arrays are (H, T), load convention.

    load_w: forecast base load, W (≥ 0).
    pv_w: forecast PV output, W (≤ 0).
    fleet: device and connection limits.
    feeder_max_w: transformer limit, W.
    dt_h: interval length, h.
    import_per_kwh, feed_in_per_kwh: grid prices, currency per kWh.
    """

    load_w: np.ndarray
    pv_w: np.ndarray
    fleet: Fleet
    feeder_max_w: float
    dt_h: float
    import_per_kwh: float
    feed_in_per_kwh: float


@dataclass(frozen=True)
class Plan:
    """The dispatch result; (H, T) arrays in W, load convention.

    battery_w: battery power (> 0 charging). ev_w: EV charging (≥ 0).
    curtail_w: PV curtailment (≥ 0, the amount PV output is reduced by).
    net_w: household grid power. grid_w: transformer power per interval, shape (T,).
    ev_unmet_wh: energy each EV session misses, Wh, shape (S,). cost: objective, currency.
    """

    battery_w: np.ndarray
    ev_w: np.ndarray
    curtail_w: np.ndarray
    net_w: np.ndarray
    grid_w: np.ndarray
    ev_unmet_wh: np.ndarray
    cost: float


def _blocks(p: CommunityProblem) -> tuple[int, int, int]:
    h, t = p.load_w.shape
    return h, t, len(p.fleet.ev_need_wh)


def _matrix(p: CommunityProblem) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Constraint matrix and row bounds."""
    n_h, n_t, n_s = _blocks(p)
    n = n_h * n_t
    eye_n = sp.identity(n, format="csr")
    zero_n = sp.csr_matrix((n, n))
    eta = np.repeat(p.fleet.bat_eta, n_t)
    g_cols = 3 * n_t + n_s

    # household balance: net - curt - bch + bdis - ev = load + pv
    bal = sp.hstack([-eye_n, -eye_n, eye_n, zero_n, -eye_n, eye_n, sp.csr_matrix((n, g_cols))])
    bal_rhs = (p.load_w + p.pv_w).ravel()

    # battery energy: e[t] - e[t-1] - eta dt bch + dt/eta bdis = e0 at t == 0, else 0
    shift = sp.kron(sp.identity(n_h), sp.eye(n_t, k=-1))
    soc = sp.hstack(
        [
            zero_n,
            sp.diags(-eta * p.dt_h),
            sp.diags(p.dt_h / eta),
            eye_n - shift,
            zero_n,
            zero_n,
            sp.csr_matrix((n, g_cols)),
        ]
    )
    soc_rhs = np.zeros((n_h, n_t))
    soc_rhs[:, 0] = p.fleet.bat_e0_wh
    soc_rhs = soc_rhs.ravel()

    # terminal energy not below the start
    last = sp.csr_matrix(
        (np.ones(n_h), (np.arange(n_h), np.arange(n_h) * n_t + n_t - 1)), shape=(n_h, n)
    )
    term = sp.hstack([sp.csr_matrix((n_h, 3 * n)), last, sp.csr_matrix((n_h, 2 * n + g_cols))])

    # transformer: sum_h net - gimp - gover + gexp = 0
    sum_h = sp.kron(np.ones((1, n_h)), sp.identity(n_t))
    eye_t = sp.identity(n_t)
    feeder = sp.hstack(
        [sp.csr_matrix((n_t, 5 * n)), sum_h, -eye_t, eye_t, -eye_t, sp.csr_matrix((n_t, n_s))]
    )

    # EV sessions: dt * sum of ev over the window + unmet >= need
    hh, t0, t1 = (p.fleet.ev_session[:, k] for k in range(3)) if n_s else (np.array([], int),) * 3
    lengths = t1 - t0
    rows = np.repeat(np.arange(n_s), lengths)
    cols = np.concatenate(
        [h * n_t + np.arange(a, b) for h, a, b in zip(hh, t0, t1, strict=True)] or [[]]
    ).astype(np.int64)
    ev_sum = sp.csr_matrix((np.full(len(rows), p.dt_h), (rows, cols)), shape=(n_s, n))
    evc = sp.hstack(
        [sp.csr_matrix((n_s, 4 * n)), ev_sum, sp.csr_matrix((n_s, n + 3 * n_t)), sp.identity(n_s)]
    )

    a = sp.vstack([bal, soc, term, feeder, evc], format="csr")
    lo = np.concatenate([bal_rhs, soc_rhs, p.fleet.bat_e0_wh, np.zeros(n_t), p.fleet.ev_need_wh])
    hi = np.concatenate(
        [bal_rhs, soc_rhs, np.full(n_h, np.inf), np.zeros(n_t), np.full(n_s, np.inf)]
    )
    return a, lo, hi


def _bounds_and_cost(p: CommunityProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_h, n_t, n_s = _blocks(p)
    shape = (n_h, n_t)
    per_wh = p.dt_h / 1000.0  # currency per kWh -> currency per W held one interval
    conn = np.broadcast_to(p.fleet.conn_max_w[:, None], shape)
    bat = np.broadcast_to(p.fleet.bat_p_max_w[:, None], shape)
    zeros = np.zeros(shape)
    lower = [
        zeros,
        zeros,
        zeros,
        np.broadcast_to(p.fleet.bat_e_min_wh[:, None], shape),
        zeros,
        -conn,
    ]
    upper = [
        -p.pv_w,
        bat,
        bat,
        np.broadcast_to(p.fleet.bat_e_max_wh[:, None], shape),
        p.fleet.ev_max_w,
        np.maximum(conn, p.load_w),  # a base load above the fuse is a fact, not a choice
    ]
    cost = [
        np.full(shape, CURTAIL_COST_PER_KWH * per_wh),
        np.full(shape, CYCLE_COST_PER_KWH * per_wh / 2),
        np.full(shape, CYCLE_COST_PER_KWH * per_wh / 2),
        zeros,
        zeros,
        zeros,
    ]
    t_zero, t_max = np.zeros(n_t), np.full(n_t, p.feeder_max_w)
    lb = np.concatenate([b.ravel() for b in lower] + [t_zero, t_zero, t_zero, np.zeros(n_s)])
    ub = np.concatenate(
        [b.ravel() for b in upper] + [t_max, t_max, np.full(n_t, np.inf), np.full(n_s, np.inf)]
    )
    c = np.concatenate(
        [b.ravel() for b in cost]
        + [
            np.full(n_t, p.import_per_kwh * per_wh),
            np.full(n_t, -p.feed_in_per_kwh * per_wh),
            np.full(n_t, OVERLOAD_COST_PER_KWH * per_wh),
            np.full(n_s, UNMET_EV_COST_PER_KWH / 1000.0),
        ]
    )
    return lb, ub, c


def solve(p: CommunityProblem, solver: str = "glop") -> Plan:
    """Solve the community dispatch over the whole horizon of ``p``.

    solver: an OR-Tools model_builder backend name ("glop", "pdlp", "highs").
    Returns the plan; raises DispatchError if the solver does not reach an optimum.
    """
    n_h, n_t, _ = _blocks(p)
    a, lo, hi = _matrix(p)
    lb, ub, c = _bounds_and_cost(p)
    model = mb.Model()
    model.helper.fill_model_from_sparse_data(lb, ub, c, lo, hi, a)
    engine = mb.Solver(solver)
    status = engine.solve(model)
    if status != mb.SolveStatus.OPTIMAL:
        raise DispatchError(f"community dispatch not solved: {status.name}")
    x = engine.values(model.get_variables()).to_numpy()
    n = n_h * n_t
    curt, bch, bdis, _e, ev, net = (x[k * n : (k + 1) * n].reshape(n_h, n_t) for k in range(6))
    g = x[6 * n : 6 * n + 3 * n_t].reshape(3, n_t)
    return Plan(
        battery_w=bch - bdis,
        ev_w=ev,
        curtail_w=curt,
        net_w=net,
        grid_w=g[0] - g[1] + g[2],
        ev_unmet_wh=x[6 * n + 3 * n_t :],
        cost=float(engine.objective_value),
    )
