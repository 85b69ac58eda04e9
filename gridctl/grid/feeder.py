"""Feeders: load a SimBench code or a pandapower JSON file and place households on its buses.

pandapower works in MW / MVar; gridctl works in W / var. The conversion happens in this
package (``gridctl.grid``) and nowhere else.
"""

from __future__ import annotations

import copy
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd

from gridctl.core import W_PER_KW, FeederError
from gridctl.grid import W_PER_MW
from gridctl.grid.simbench_cache import cached_net

DEFAULT_PROFILE_SOURCE = "1-LV-rural1--0-sw"
"""SimBench code whose profiles serve feeders that carry none (pandapower JSON files)."""


@dataclass(frozen=True)
class Profiles:
    """Normalised 15-minute profiles of one SimBench year (2016, 35 136 rows).

    load: active-power factor per load profile name (dimensionless, max 1).
    pv: PV output per installed kW (dimensionless, 0..1), per PV profile name.
    """

    load: pd.DataFrame
    pv: pd.DataFrame


@functools.lru_cache(maxsize=4)
def _simbench_net_cached(code: str) -> pp.pandapowerNet:
    return cached_net(code, _read_simbench)


def _read_simbench(code: str) -> pp.pandapowerNet:
    """The SimBench network ``code`` read from simbench's own CSV set."""
    import simbench as sb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sb.get_simbench_net(code)
    except (KeyError, ValueError, IndexError, AttributeError):
        raise FeederError(f"unknown SimBench code {code!r}") from None


def _simbench_net(code: str) -> pp.pandapowerNet:
    """A fresh copy of a SimBench network (kept in memory, and on disk by
    ``gridctl.grid.simbench_cache``: reading one from the CSV set takes seconds)."""
    return copy.deepcopy(_simbench_net_cached(code))


def _profiles(net: pp.pandapowerNet) -> Profiles:
    prof = getattr(net, "profiles", None) or {}
    load_raw = prof.get("load")
    pv_raw = prof.get("renewables")
    if load_raw is None or pv_raw is None or load_raw.empty:
        raise FeederError("feeder carries no SimBench profiles")
    load = load_raw.filter(like="_pload").rename(columns=lambda c: c.removesuffix("_pload"))
    pv = pv_raw[[c for c in pv_raw.columns if c.startswith("PV")]]
    return Profiles(load=load.reset_index(drop=True), pv=pv.reset_index(drop=True))


def load_feeder(
    simbench: str | None, file: Path | None, base_dir: Path
) -> tuple[pp.pandapowerNet, Profiles]:
    """Load a feeder and the profiles that go with it.

    simbench: a SimBench code such as ``1-LV-rural1--0-sw``, or None.
    file: a pandapower JSON file (relative to ``base_dir``), or None.
    Returns the network and the SimBench profiles (the feeder's own, or the default set).
    """
    if simbench is not None:
        net = _simbench_net(simbench)
        return net, _profiles(net)
    assert file is not None
    path = file if file.is_absolute() else base_dir / file
    try:
        net = pp.from_json(str(path))
    except FileNotFoundError:
        raise FeederError(f"feeder file {path} does not exist") from None
    except Exception as e:  # pandapower raises many kinds on a bad file
        raise FeederError(f"feeder file {path} is not a pandapower network: {e}") from None
    return net, _profiles(_simbench_net(DEFAULT_PROFILE_SOURCE))


def resolve_buses(net: pp.pandapowerNet, buses: list[str | int]) -> np.ndarray:
    """Bus indices for bus names or indices; raises FeederError naming the first unknown one.

    Only in-service low-voltage buses (the feeder side of the transformer) accept households.
    """
    lv_kv = net.bus.vn_kv.min()
    candidates = net.bus[(net.bus.vn_kv == lv_kv) & net.bus.in_service]
    by_name = {str(n): int(i) for i, n in candidates.name.items()}
    out = np.empty(len(buses), dtype=np.int64)
    for k, b in enumerate(buses):
        if isinstance(b, int) and b in candidates.index:
            out[k] = b
        elif isinstance(b, str) and b in by_name:
            out[k] = by_name[b]
        else:
            raise FeederError(f"households[{k}].bus: no low-voltage bus {b!r} in this feeder")
    return out


def transformer_rating_w(net: pp.pandapowerNet) -> float:
    """Sum of the feeder's transformer ratings, VA (the most active power at unity power
    factor, W)."""
    return float(net.trafo.sn_mva.sum()) * W_PER_MW


def transformer_no_load_loss_w(net: pp.pandapowerNet) -> float:
    """Sum of the feeder's transformer no-load (iron) losses, W."""
    return float(net.trafo.pfe_kw.sum()) * W_PER_KW
