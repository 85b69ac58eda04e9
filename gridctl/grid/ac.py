"""AC power flow of a feeder with households attached, with pandapower."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from gridctl.core import FeederError
from gridctl.grid import W_PER_MW


@dataclass(frozen=True)
class AcResult:
    """One converged power flow, in gridctl units.

    p_trafo_w: active power into the feeder at the transformers' HV side, load convention
        (> 0 the feeder imports from upstream), W.
    losses_w: line plus transformer losses, W (≥ 0).
    vm_pu: voltage magnitude of every in-service bus, p.u.
    line_loading_pct: loading of every in-service line, % of its thermal rating.
    trafo_loading_pct: loading of every transformer, % of its rating.
    """

    p_trafo_w: float
    losses_w: float
    vm_pu: np.ndarray
    line_loading_pct: np.ndarray
    trafo_loading_pct: np.ndarray


class AcFeeder:
    """A feeder whose own loads and generators are replaced by one load per household.

    Each household is a pandapower ``load`` at its bus carrying the household's net power
    (load convention, so export is a negative load). household_bus: each household's pandapower
    bus; trafo_lv_bus: the low-voltage buses of the in-service transformers.
    """

    def __init__(self, net: pp.pandapowerNet, household_bus: np.ndarray, names: list[str]):
        self.net = copy.deepcopy(net)
        self.household_bus = np.asarray(household_bus, dtype=np.int64)
        trafo = self.net.trafo
        self.trafo_lv_bus = trafo.lv_bus[trafo.in_service].to_numpy(dtype=np.int64)
        for table in ("load", "sgen", "storage", "gen"):
            if table in self.net and len(self.net[table]):
                self.net[table]["in_service"] = False
        self._idx = np.array(
            [
                pp.create_load(self.net, bus=int(b), p_mw=0.0, name=n)
                for b, n in zip(household_bus, names, strict=True)
            ]
        )
        self._solved = False

    def run(self, p_w: np.ndarray, q_var: np.ndarray) -> AcResult:
        """Power flow with household powers ``p_w`` (W) and ``q_var`` (var), load convention."""
        self.net.load.loc[self._idx, "p_mw"] = p_w / W_PER_MW
        self.net.load.loc[self._idx, "q_mvar"] = q_var / W_PER_MW
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pp.runpp(self.net, numba=False, init="results" if self._solved else "auto")
        except pp.LoadflowNotConverged:
            self._solved = False
            raise FeederError("AC power flow did not converge") from None
        self._solved = True
        net = self.net
        losses_mw = net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()
        return AcResult(
            p_trafo_w=float(net.res_trafo.p_hv_mw.sum() * W_PER_MW),
            losses_w=float(losses_mw * W_PER_MW),
            # copies: pandapower overwrites its result tables in place on the next run
            vm_pu=net.res_bus.vm_pu[net.bus.in_service].to_numpy(copy=True),
            line_loading_pct=net.res_line.loading_percent[net.line.in_service].to_numpy(copy=True),
            trafo_loading_pct=net.res_trafo.loading_percent.to_numpy(copy=True),
        )

    def vm_pu(self, buses: np.ndarray) -> np.ndarray:
        """Voltage magnitudes of the last power flow at pandapower buses ``buses``, p.u."""
        return self.net.res_bus.vm_pu.loc[buses].to_numpy(copy=True)

    def loading_pct(self, branches: list[tuple[str, int] | None]) -> np.ndarray:
        """Loading of the last power flow for (table, index) branches, % (0 for None/switches)."""
        out = np.zeros(len(branches))
        for table in ("line", "trafo"):
            at = [(k, b[1]) for k, b in enumerate(branches) if b is not None and b[0] == table]
            if at:
                k, idx = np.array(at).T
                out[k] = self.net[f"res_{table}"].loading_percent.loc[idx].to_numpy()
        return out
