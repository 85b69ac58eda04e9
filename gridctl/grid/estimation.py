"""State estimation of a feeder from households' claims, with bad-data identification.

Each interval the coordinator checks the households' signed power claims against the feeder's
physics: weighted least squares (WLS) on a model linearised around pandapower's AC power flow
at the claimed powers, and the largest normalised residual (LNR) test, iterated.

Model (LinDistFlow sensitivities, per unit on the 1 MVA base, load convention). States: the
deviation ``d_j`` of each household's true active power from the operating point (W), the
deviation ``e_j`` of its reactive power (var) and an offset ``dv0`` of the slack voltage (p.u.).
Measurements: the claims (prior on ``d``), reactive-power pseudo-measurements ``claim × tan φ``
(prior on ``e``), household and transformer voltages and the transformer meter::

    |V_a| ≈ |V_a|ac + (|V_0| dv0 - sum_j (R_aj d_j + X_aj e_j) / W_PER_PU) / |V_a|ac
    P_T ≈ P_T,ac + sum_j (n_j + λp_j) d_j + λq_j e_j

R_aj (X_aj) is the resistance (reactance) of the path the slack shares with buses a and j;
n_j the number of transformers between the slack and household j (``AcResult.p_trafo_w`` sums
every transformer's HV-side power) and λ the linear loss sensitivities at the operating point.

With the claims and pseudo-measurements as a diagonal prior the estimate is computed in
measurement space: S = H P0 Hᵀ + R over the few voltage and meter rows (m ≤ H + 2), so
one Cholesky factor of an m×m matrix gives the state, the objective J = νᵀ S⁻¹ ν and the residual
covariance of the claims Ω = R − H G⁻¹ Hᵀ = Bᵀ S⁻¹ B (B = H_d P0_d), the same quantities as the
textbook WLS (Abur & Expósito, *Power System State Estimation*, 2004, ch. 5) at O(m² H) cost.
States nobody vouches for (households without a claim or whose claim was removed, and the slack
offset) are diffuse: they are eliminated through a small k×k system instead of entering S with
a huge variance, which would ruin its factor.

What the physics can tell: with a transformer meter of a few W to tens of W and household
voltages at 0.1 %, the balance carries far more information than the voltages (a kW at the far
end of a 0.4 kV line moves its voltage by about 0.1 %), so residuals of most claims correlate
above 0.99 and a cheat is held with a group, not named; precise (interval-averaged) voltages
shrink the group to the end of the cheater's line.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandapower as pp
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.stats import chi2

from gridctl.core import FeederError
from gridctl.grid import W_PER_MW
from gridctl.grid.ac import AcFeeder
from gridctl.grid.network import W_PER_PU, radial_network

FREE_SIGMA_W = 1e5
"""Prior σ of a household power nobody vouches for (no claim, or a removed one), W: a free state."""

SLACK_SIGMA_PU = 0.1
"""Prior σ of the slack voltage offset, p.u. (unknown within ±10 %: effectively free)."""


@dataclass(frozen=True)
class Measurements:
    """One interval's measurements; arrays in household order.

    Parameters
    ----------
    p_w : claimed net active power per household, load convention, W (NaN = no claim: free).
    sigma_p_w : σ of each claim, W (> 0).
    sigma_q_var : σ of each household's reactive pseudo-measurement (claim × tan φ), var (> 0).
    v_pu : voltage each household's meter reports, p.u. (NaN = not reported).
    sigma_v_pu : σ of the household voltages, p.u. (> 0), scalar or per household.
    p_trafo_w : transformer meter where ``AcResult.p_trafo_w`` reports it, load convention
        (> 0 the feeder imports), W (NaN = no meter).
    sigma_trafo_w : σ of the transformer meter, W (> 0).
    v_trafo_pu : voltage of the LV bus of the transformer nearest the slack, p.u. (NaN = none).
    sigma_v_trafo_pu : its σ, p.u. (> 0).
    """

    p_w: np.ndarray
    sigma_p_w: np.ndarray
    sigma_q_var: np.ndarray
    v_pu: np.ndarray
    sigma_v_pu: np.ndarray | float
    p_trafo_w: float
    sigma_trafo_w: float
    v_trafo_pu: float = math.nan
    sigma_v_trafo_pu: float = 0.001


@dataclass(frozen=True)
class Estimate:
    """One WLS estimate; arrays in household order.

    p_w: estimated true net power per household, load convention, W.
    deviation_w: residual of each claim, claimed − estimated true power, W (NaN where the claim
        is absent or removed). Load convention, so < 0 means the household claimed less import
        (or more export) than the physics supports: the claim favours it.
    rn: normalised residual |deviation| / sqrt(Ω_ii) of each claim (NaN where absent or removed;
        0 where no measurement can check the claim).
    v_pu: estimated voltage at each household's bus, p.u.
    v_slack_offset_pu: estimated offset of the slack voltage from the AC model's, p.u.
    trafo_residual_w: transformer meter − its estimate, W (NaN without a meter).
    trafo_rn: its normalised residual.
    j: WLS objective; j_threshold: its chi² bound at ``alpha``; dof: its degrees of freedom.
    """

    p_w: np.ndarray
    deviation_w: np.ndarray
    rn: np.ndarray
    v_pu: np.ndarray
    v_slack_offset_pu: float
    trafo_residual_w: float
    trafo_rn: float
    j: float
    j_threshold: float
    dof: int
    bt: np.ndarray = field(repr=False)
    zb: np.ndarray = field(repr=False)
    """Factors of the claims' residual covariance: Ω = btᵀ bt − zbᵀ zb (W²)."""

    def correlation(self, i: int) -> np.ndarray:
        """Residual correlation ρ_ij = Ω_ij / sqrt(Ω_ii Ω_jj) of claim ``i`` with every claim
        (NaN where a claim is absent, removed or unchecked)."""
        omega = self.bt.T @ self.bt[:, i] - self.zb.T @ self.zb[:, i]
        d = np.einsum("ij,ij->j", self.bt, self.bt) - np.einsum("ij,ij->j", self.zb, self.zb)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = omega / np.sqrt(d * d[i])
        return np.where(np.isfinite(self.deviation_w) & (d > 0), rho, np.nan)


@dataclass(frozen=True)
class Prepared:
    """One interval's measurements made ready for estimates (``StateEstimator.prepare``).

    Whitened by L0 (S0 = L0 L0ᵀ, the prior covariance in measurement space): ht_d, ht_e (m×H)
    the sensitivities to household P (p.u./W) and Q, ht_0 to the slack offset, nut the
    innovation (measured − AC model at the claims), et the transformer meter's unit row.
    var_d, var_e: prior variances of the claims (W²) and pseudo-measurements (var²), 0 without
    a claim. p_op: the operating point, W. r_t: the meter's variance, W². v_h, v_0, rc_h, xc_h:
    household-bus and slack voltages at the operating point (p.u.) and the households' common
    path resistance and reactance (p.u.), for the estimated voltages.
    """

    claim: np.ndarray
    var_d: np.ndarray
    var_e: np.ndarray
    p_op: np.ndarray
    ht_d: np.ndarray
    ht_e: np.ndarray
    ht_0: np.ndarray
    nut: np.ndarray
    et: np.ndarray | None
    r_t: float
    v_h: np.ndarray
    v_0: float
    rc_h: np.ndarray
    xc_h: np.ndarray


def _check(name: str, a: object, n: int | None, nan_ok: bool, positive: bool) -> np.ndarray:
    """``a`` as a float array of length ``n`` (or a scalar if ``n`` is None); ValueError naming
    ``name`` if it is the wrong shape, infinite, NaN where not allowed, or not > 0."""
    x = np.asarray(a, dtype=float)
    if n is None and x.ndim != 0:
        raise ValueError(f"{name}: expected a number, got shape {x.shape}")
    if n is not None:
        if x.ndim == 0:
            x = np.full(n, float(x))
        if x.shape != (n,):
            raise ValueError(f"{name}: expected {n} values, got shape {x.shape}")
    if np.isinf(x).any() or (not nan_ok and np.isnan(x).any()):
        raise ValueError(f"{name}: values must be finite{' or NaN' if nan_ok else ''}")
    if positive and not (x[~np.isnan(x)] > 0).all():
        raise ValueError(f"{name}: values must be > 0")
    return x


class StateEstimator:
    """WLS state estimation of one radial feeder with households on its buses.

    net: the feeder (its own loads and generators are replaced by one load per household).
    household_bus: pandapower bus of each household, (H,).
    names: household ids, (H,).
    tan_phi: reactive-to-active ratio of each household's reactive pseudo-measurement, (H,).
    Everything constant per feeder (path resistances and reactances, path incidence) is
    computed here, once; an estimate costs one AC power flow and O(m² H) dense algebra.
    """

    def __init__(
        self,
        net: pp.pandapowerNet,
        household_bus: np.ndarray,
        names: list[str],
        tan_phi: np.ndarray,
    ):
        self.names = list(names)
        self.household_bus = np.asarray(household_bus, dtype=np.int64)
        n = len(self.names)
        self.tan_phi = _check("tan_phi", tan_phi, n, nan_ok=False, positive=False)
        self.ac = AcFeeder(net, household_bus, self.names)
        rn = radial_network(net)
        trafo_pos = [k for k, b in enumerate(rn.branch) if b is not None and b[0] == "trafo"]
        if not trafo_pos:
            raise FeederError("the feeder has no transformer to meter")
        # measured buses: each household's, then the LV bus of the transformer nearest the slack
        pos = np.append(rn.position(self.household_bus), min(trafo_pos))
        self.trafo_lv_bus = int(rn.bus[min(trafo_pos)])
        """pandapower bus whose voltage ``Measurements.v_trafo_pu`` reports."""
        self._cols, self._col = np.unique(pos, return_inverse=True)
        # path incidence A (bus position × measured bus): 1 where the branch feeding the bus
        # lies on the path from the slack to the measured bus
        rows, cols = [], []
        cur, col = self._cols.copy(), np.arange(len(self._cols))
        while len(cur):
            on = cur > 0
            rows.append(cur[on])
            cols.append(col[on])
            cur, col = rn.parent[cur[on]], col[on]
        r_, c_ = np.concatenate(rows), np.concatenate(cols)
        self._a = sp.csr_matrix((np.ones(len(r_)), (r_, c_)), shape=(rn.n, len(self._cols)))
        a_t = self._a.T.tocsr()
        self._r_common = (a_t @ sp.diags(rn.r_pu) @ self._a).toarray()  # pu, measured × measured
        self._x_common = (a_t @ sp.diags(rn.x_pu) @ self._a).toarray()
        is_trafo = np.zeros(rn.n)
        is_trafo[trafo_pos] = 1.0
        above = np.zeros(rn.n)
        for k in range(1, rn.n):  # parents come first
            above[k] = above[rn.parent[k]] + is_trafo[k]
        self._trafos_above = above  # transformers on the path from the slack, this branch included
        col_h = self._col[:n]
        self._rc_h = self._r_common[np.ix_(col_h, col_h)]  # pu, household × household
        self._xc_h = self._x_common[np.ix_(col_h, col_h)]
        self._rn = rn
        self._bus_row = self.ac.net.bus.index.get_indexer(rn.bus)

    @property
    def n(self) -> int:
        """Number of households."""
        return len(self.names)

    def prepare(self, m: Measurements) -> Prepared:
        """Validate one interval's measurements and do the work every estimate of them shares:
        the AC flow at the claims, the sensitivities, the factor of the prior covariance.

        ValueError naming the field for a wrong length, an infinite value, NaN where it is not
        allowed, or a σ that is not > 0.
        """
        n = self.n
        claim = _check("p_w", m.p_w, n, nan_ok=True, positive=False)
        sig_p = _check("sigma_p_w", m.sigma_p_w, n, nan_ok=False, positive=True)
        sig_q = _check("sigma_q_var", m.sigma_q_var, n, nan_ok=False, positive=True)
        v = _check("v_pu", m.v_pu, n, nan_ok=True, positive=True)
        sig_v = _check("sigma_v_pu", m.sigma_v_pu, n, nan_ok=False, positive=True)
        p_t = float(_check("p_trafo_w", m.p_trafo_w, None, nan_ok=True, positive=False))
        sig_t = float(_check("sigma_trafo_w", m.sigma_trafo_w, None, nan_ok=False, positive=True))
        v_t = float(_check("v_trafo_pu", m.v_trafo_pu, None, nan_ok=True, positive=True))
        sig_vt = float(
            _check("sigma_v_trafo_pu", m.sigma_v_trafo_pu, None, nan_ok=False, positive=True)
        )
        # the operating point is the claims (0 W without one), also for claims found bad: the
        # AC flow runs once per interval however many claims identify() removes
        p_op = np.nan_to_num(claim)
        q_op = p_op * self.tan_phi
        ac = self.ac.run(p_op, q_op)
        vm = self.ac.net.res_bus.vm_pu.to_numpy()[self._bus_row]

        # operating point on the tree: voltages, household flows, loss sensitivities
        rn = self._rn
        n_col = len(self._cols)
        col_h = self._col[:n]
        p_col = np.bincount(col_h, p_op, minlength=n_col) / W_PER_PU
        q_col = np.bincount(col_h, q_op, minlength=n_col) / W_PER_PU
        weight = 2.0 * rn.r_pu * self._trafos_above / vm**2
        lam_p = self._a.T @ (weight * (self._a @ p_col))
        lam_q = self._a.T @ (weight * (self._a @ q_col))
        v_col = vm[self._cols]

        # measurement rows: reported household voltages, the transformer voltage, its meter
        v_meas = np.append(v, v_t)
        sig_vm = np.append(sig_v, sig_vt)
        rows_v = np.flatnonzero(np.isfinite(v_meas))
        cv = self._col[rows_v]
        inv_v = 1.0 / (v_col[cv] * W_PER_PU)
        h_d = -self._r_common[np.ix_(cv, col_h)] * inv_v[:, None]
        h_e = -self._x_common[np.ix_(cv, col_h)] * inv_v[:, None]
        h_0 = vm[0] / v_col[cv]
        nu = v_meas[rows_v] - v_col[cv]
        r_diag = sig_vm[rows_v] ** 2
        if np.isfinite(p_t):
            h_d = np.vstack([h_d, (self._trafos_above[self._cols] + lam_p)[col_h]])
            h_e = np.vstack([h_e, lam_q[col_h]])
            h_0 = np.append(h_0, 0.0)
            nu = np.append(nu, p_t - ac.p_trafo_w)
            r_diag = np.append(r_diag, sig_t**2)

        # the claims and their reactive pseudo-measurements are a proper prior: covariance S0
        # in measurement space, factored once (a household without a claim has none)
        var_d = np.where(np.isnan(claim), 0.0, sig_p**2)
        var_e = np.where(np.isnan(claim), 0.0, sig_q**2)
        s0 = (h_d * var_d) @ h_d.T + (h_e * var_e) @ h_e.T
        s0[np.diag_indices(len(nu))] += r_diag
        l0 = sla.cholesky(s0, lower=True, check_finite=False) if len(nu) else np.eye(0)

        def white(x: np.ndarray) -> np.ndarray:
            return sla.solve_triangular(l0, x, lower=True, check_finite=False)

        # household voltages move with the states through the same path impedances
        v_h = v_col[col_h]
        return Prepared(
            claim=claim,
            var_d=var_d,
            var_e=var_e,
            p_op=p_op,
            ht_d=white(h_d),
            ht_e=white(h_e),
            ht_0=white(h_0),
            nut=white(nu),
            et=white(np.eye(len(nu))[:, -1]) if np.isfinite(p_t) else None,
            r_t=sig_t**2,
            v_h=v_h,
            v_0=float(vm[0]),
            rc_h=self._rc_h,
            xc_h=self._xc_h,
        )

    def estimate(
        self, m: Measurements | Prepared, free: np.ndarray | None = None, alpha: float = 0.01
    ) -> Estimate:
        """Estimate the feeder's state from one interval's measurements.

        m: the measurements, or ``prepare(m)`` to estimate them again cheaply.
        free: households whose claim is not used (removed by ``identify``), (H,) bool;
            households without a claim are always free.
        alpha: false-alarm probability of the chi² bound on J.
        """
        pr = self.prepare(m) if isinstance(m, Measurements) else m
        n_rows = len(pr.nut)
        is_free = np.isnan(pr.claim)
        if free is not None:
            free = np.asarray(free, dtype=bool)
            if free.shape != is_free.shape:
                raise ValueError(f"free: expected {len(is_free)} values, got shape {free.shape}")
            is_free |= free
        bt = pr.ht_d * np.where(is_free, 0.0, pr.var_d)
        # free households and the slack offset are diffuse states F (a removed claim keeps its
        # prior in S0 and gets a diffuse state on top: the same as none), eliminated through a
        # k×k system so that their huge prior variance never enters a factor
        free_idx = np.flatnonzero(is_free)
        n_free = len(free_idx)
        ft = np.column_stack([pr.ht_d[:, free_idx], pr.ht_e[:, free_idx], pr.ht_0])
        lam = np.append(np.full(2 * n_free, FREE_SIGMA_W**-2), SLACK_SIGMA_PU**-2)
        c = 1.0 / np.sqrt(np.einsum("ij,ij->j", ft, ft) + lam)  # Jacobi scaling
        fs = ft * c
        lm = sla.cholesky(fs.T @ fs + np.diag(lam * c**2), lower=True, check_finite=False)

        def proj(x: np.ndarray) -> np.ndarray:
            return sla.solve_triangular(lm, fs.T @ x, lower=True, check_finite=False)

        bd_all = pr.ht_d * pr.var_d
        be_all = pr.ht_e * pr.var_e
        g = proj(pr.nut)
        zb = proj(bt)
        x_free = c * sla.solve_triangular(lm, g, lower=True, trans="T", check_finite=False)
        d_hat = bd_all.T @ pr.nut - proj(bd_all).T @ g
        d_hat[free_idx] += x_free[:n_free]
        e_hat = be_all.T @ pr.nut - proj(be_all).T @ g
        e_hat[free_idx] += x_free[n_free:-1]
        dv0 = float(x_free[-1])

        p_hat = pr.p_op + d_hat
        deviation = np.where(is_free, np.nan, pr.claim - p_hat)
        omega = np.maximum(np.einsum("ij,ij->j", bt, bt) - np.einsum("ij,ij->j", zb, zb), 0.0)
        checked = omega > 1e-12 * pr.var_d
        with np.errstate(invalid="ignore", divide="ignore"):
            rn_claim = np.where(checked, np.abs(deviation) / np.sqrt(omega), 0.0)
        rn_claim[is_free] = np.nan

        v_hat = pr.v_h + (pr.v_0 * dv0 - (pr.rc_h @ d_hat + pr.xc_h @ e_hat) / W_PER_PU) / pr.v_h
        trafo_res, trafo_rn = math.nan, math.nan
        if pr.et is not None:
            # the meter's residual R Π ν and its variance R Π R, Π = S⁻¹ without the diffuse
            # states: (Π ν)_T = e_Tᵀ L0⁻ᵀ P ν̃ and Π_TT = ‖P ẽ_T‖², P the projection off F
            pi_nu_t = float(pr.et @ pr.nut - proj(pr.et) @ g)
            pi_tt = float(pr.et @ pr.et - np.sum(proj(pr.et) ** 2))
            trafo_res = pr.r_t * pi_nu_t
            trafo_rn = abs(pi_nu_t) / math.sqrt(pi_tt)
        # each diffuse state the measurements see takes a degree of freedom from J
        lm_inv = sla.solve_triangular(lm, np.eye(len(lam)), lower=True)
        seen = len(lam) - float(np.einsum("ij,ij,j->", lm_inv, lm_inv, lam * c**2))
        dof = max(n_rows - round(seen), 0)
        return Estimate(
            p_w=p_hat,
            deviation_w=deviation,
            rn=rn_claim,
            v_pu=v_hat,
            v_slack_offset_pu=dv0,
            trafo_residual_w=trafo_res,
            trafo_rn=trafo_rn,
            j=float(pr.nut @ pr.nut - g @ g),
            j_threshold=float(chi2.ppf(1.0 - alpha, dof)) if dof else math.nan,
            dof=dof,
            bt=bt,
            zb=zb,
        )


def pandapower_measurements(est: StateEstimator, m: Measurements) -> pp.pandapowerNet:
    """A copy of the estimator's feeder carrying ``m`` as pandapower measurements, to run
    ``pandapower.estimation`` on the same data (cross-checks and benchmarks).

    Households sharing a bus become one measurement per quantity (pandapower keeps one per
    bus): summed powers, the mean voltage, σ combined; buses without households and other than
    the slack's get zero-injection measurements (σ 1 W / 1 var). Needs claims at every household.
    """
    net = copy.deepcopy(est.ac.net)
    slack_bus = int(net.ext_grid.bus.iloc[0])
    bus = est.household_bus
    sig_v = np.broadcast_to(np.asarray(m.sigma_v_pu, dtype=float), bus.shape)
    for b in net.bus.index[net.bus.in_service]:
        at = bus == b
        if at.any():
            p_w, q_var = m.p_w[at].sum(), (m.p_w[at] * est.tan_phi[at]).sum()
            p_std_w = np.sqrt((m.sigma_p_w[at] ** 2).sum())
            q_std_var = np.sqrt((m.sigma_q_var[at] ** 2).sum())
            pp.create_measurement(net, "p", "bus", p_w / W_PER_MW, p_std_w / W_PER_MW, b)
            pp.create_measurement(net, "q", "bus", q_var / W_PER_MW, q_std_var / W_PER_MW, b)
            v_std = np.sqrt((sig_v[at] ** 2).sum()) / at.sum()
            pp.create_measurement(net, "v", "bus", m.v_pu[at].mean(), v_std, b)
        elif b != slack_bus:
            pp.create_measurement(net, "p", "bus", 0.0, 1.0 / W_PER_MW, b)
            pp.create_measurement(net, "q", "bus", 0.0, 1.0 / W_PER_MW, b)
    if np.isfinite(m.v_trafo_pu):
        pp.create_measurement(net, "v", "bus", m.v_trafo_pu, m.sigma_v_trafo_pu, est.trafo_lv_bus)
    if np.isfinite(m.p_trafo_w) and len(net.trafo) == 1:
        p_mw, std_mw = m.p_trafo_w / W_PER_MW, m.sigma_trafo_w / W_PER_MW
        pp.create_measurement(net, "p", "trafo", p_mw, std_mw, net.trafo.index[0], side="hv")
    return net


@dataclass(frozen=True)
class Identification:
    """The outcome of iterated LNR.

    named: households identified alone (their claims were removed), in the order found.
    held: groups of households the physics cannot tell apart (claims removed together).
    steps: one JSON-ready record per removal (residuals, deviations in W, correlations).
    final: the estimate without the removed claims.
    """

    named: list[int]
    held: list[list[int]]
    steps: list[dict]
    final: Estimate


def _num(x: float, digits: int) -> float | None:
    """A JSON-ready number (None for NaN)."""
    return None if math.isnan(x) else round(float(x), digits)


def identify(
    est: StateEstimator,
    m: Measurements,
    threshold: float = 4.0,
    rho_min: float = 0.95,
    j_margin: float | None = None,
    max_steps: int = 10,
) -> Identification:
    """Iterated largest-normalised-residual identification of bad claims.

    While the largest normalised residual rN_k of a claim exceeds ``threshold`` (and fewer than
    ``max_steps`` removals were made), take that claim k and the claims j the physics cannot
    tell apart from it (one bus, or a group only the transformer balance sees): residual
    correlation |ρ_kj| ≥ ``rho_min`` and blaming j instead of k leaves J larger by at most
    ``j_margin`` (rN_k² − rN_j², the drop in J removing each claim alone; default
    ``threshold²``). The second condition lets a large error be pinned on one of several
    correlated claims when the residuals single it out. One claim alone is *named*; a group is
    *held*. Remove them (free states) and estimate again.
    """
    margin = threshold**2 if j_margin is None else j_margin
    free = np.zeros(est.n, dtype=bool)
    named: list[int] = []
    held: list[list[int]] = []
    steps: list[dict] = []
    prepared = est.prepare(m)
    e = est.estimate(prepared)
    while len(steps) < max_steps:
        rn = np.where(np.isnan(e.rn), -np.inf, e.rn)
        k = int(np.argmax(rn)) if len(rn) else 0
        if not len(rn) or rn[k] <= threshold:
            break
        rho = e.correlation(k)
        excess = rn[k] ** 2 - rn**2
        group = np.flatnonzero((np.abs(np.nan_to_num(rho)) >= rho_min) & (excess <= margin))
        group = group[np.argsort(-e.rn[group])]
        steps.append(
            {
                "household": est.names[k],
                "rn": _num(e.rn[k], 3),
                "deviation_w": _num(e.deviation_w[k], 1),
                "j": _num(e.j, 3),
                "j_threshold": _num(e.j_threshold, 3),
                "trafo_rn": _num(e.trafo_rn, 3),
                "group": [est.names[g] for g in group],
                "group_rn": [_num(e.rn[g], 3) for g in group],
                "group_deviation_w": [_num(e.deviation_w[g], 1) for g in group],
                "group_correlation": [_num(rho[g], 4) for g in group],
                "group_j_excess": [_num(excess[g], 3) for g in group],
            }
        )
        if len(group) == 1:
            named.append(k)
        else:
            held.append(sorted(int(g) for g in group))
        free[group] = True
        e = est.estimate(prepared, free=free)
    return Identification(named=named, held=held, steps=steps, final=e)
