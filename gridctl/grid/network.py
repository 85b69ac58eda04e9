"""A radial feeder as a tree for the linear branch-flow model (LinDistFlow).

Buses are ordered from the slack (ext_grid) bus outward; every other bus has one parent and
one branch (line, transformer or closed bus-bus switch) feeding it. Per-unit on a 1 MVA base:
powers in pu are MW, impedances are ohm / (vn_kv^2). With ``v = |V|^2`` and flows in the
load convention (power drawn from parent towards the bus, positive when the subtree consumes):

    F_k = sum of net powers in the subtree of bus k
    v_k = v_parent(k) - 2 (r_k F_k + x_k Q_k)

so each bus touches only its own branch and children: the LP rows stay sparse. Losses and
the quadratic terms are left out of the model and put back by calibrating an offset per bus
against pandapower's AC power flow at the operating point.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from gridctl.core import FeederError
from gridctl.grid import W_PER_MW

W_PER_PU = W_PER_MW
"""Watts per per-unit power (the base is 1 MVA, so 1 pu is 1 MW)."""


@dataclass(frozen=True)
class RadialNetwork:
    """Tree arrays, position k = k-th bus in breadth-first order from the slack (position 0).

    bus: pandapower bus index at each position. parent: position of the parent (-1 for the root).
    r_pu, x_pu: series impedance of the branch feeding each bus (0 for the root).
    s_max_pu: rating of that branch, MVA (inf for switches and the root).
    branch: ("line" | "trafo" | "switch", pandapower index) feeding each bus (None for the root).
    v_root_pu: slack voltage magnitude, p.u.
    """

    bus: np.ndarray
    parent: np.ndarray
    r_pu: np.ndarray
    x_pu: np.ndarray
    s_max_pu: np.ndarray
    branch: list[tuple[str, int] | None]
    v_root_pu: float

    @property
    def n(self) -> int:
        """Number of buses."""
        return len(self.bus)

    def position(self, buses: np.ndarray) -> np.ndarray:
        """Tree positions of pandapower bus indices."""
        where = {int(b): k for k, b in enumerate(self.bus)}
        try:
            return np.array([where[int(b)] for b in buses], dtype=np.int64)
        except KeyError as e:
            raise FeederError(f"bus {e.args[0]} is not connected to the slack") from None

    def subtree_sum(self, p_bus: np.ndarray) -> np.ndarray:
        """Flow into each bus from its parent: the sum over its subtree (rows = buses)."""
        flow = np.array(p_bus, dtype=float, copy=True)
        for k in range(self.n - 1, 0, -1):  # children come after parents
            flow[self.parent[k]] += flow[k]
        return flow

    def voltage_sq(self, p_bus_pu: np.ndarray, q_bus_pu: np.ndarray) -> np.ndarray:
        """Linear |V|^2 (pu^2) per bus for net bus powers (pu, load convention); rows = buses."""
        fp = self.subtree_sum(p_bus_pu)
        fq = self.subtree_sum(q_bus_pu)
        shape = (-1,) + (1,) * (fp.ndim - 1)
        drop = 2.0 * (self.r_pu.reshape(shape) * fp + self.x_pu.reshape(shape) * fq)
        v = np.empty_like(fp)
        v[0] = self.v_root_pu**2
        for k in range(1, self.n):
            v[k] = v[self.parent[k]] - drop[k]
        return v


def prune(rn: RadialNetwork, keep_buses: np.ndarray) -> RadialNetwork:
    """The network without the subtrees that hold none of ``keep_buses`` (no flow runs there,
    and their voltages equal their parent's), so the LP carries only buses that matter."""
    mark = np.zeros(rn.n)
    mark[rn.position(keep_buses)] = 1.0
    mark[0] = 1.0
    kept = np.flatnonzero(rn.subtree_sum(mark) > 0)  # keeps breadth-first order
    new_pos = np.full(rn.n, -1, dtype=np.int64)
    new_pos[kept] = np.arange(len(kept))
    parent = np.where(rn.parent[kept] >= 0, new_pos[np.maximum(rn.parent[kept], 0)], -1)
    return RadialNetwork(
        bus=rn.bus[kept],
        parent=parent,
        r_pu=rn.r_pu[kept],
        x_pu=rn.x_pu[kept],
        s_max_pu=rn.s_max_pu[kept],
        branch=[rn.branch[k] for k in kept],
        v_root_pu=rn.v_root_pu,
    )


@dataclass(frozen=True)
class Chains:
    """A tree whose unbranched runs are merged, and where each original bus went.

    network: the merged tree; a run of buses with one child and no household between two kept
    buses becomes one branch (impedances in series, the smallest rating). In the linear model
    the flow is the same all along such a run and the voltage moves monotonically, so limits
    held at its ends hold inside it: the LP loses nothing and carries far fewer rows.
    owner: (N_full,) merged position of the kept bus at or below each original bus; the
    original branch feeding a bus is part of its owner's merged branch.
    """

    network: RadialNetwork
    owner: np.ndarray


def merge_chains(rn: RadialNetwork, keep_pos: np.ndarray) -> Chains:
    """Merge the unbranched runs of ``rn``, keeping the root, branch points and ``keep_pos``."""
    n_child = np.bincount(rn.parent[1:], minlength=rn.n)
    keep = n_child != 1
    keep[keep_pos] = True
    keep[0] = True
    r, x, s = rn.r_pu.copy(), rn.x_pu.copy(), rn.s_max_pu.copy()
    top = np.arange(rn.n)  # kept ancestor each merged branch starts from
    for k in range(1, rn.n):  # parents come first: accumulate down each run
        p = rn.parent[k]
        if keep[p]:
            top[k] = p
        else:
            r[k] += r[p]
            x[k] += x[p]
            s[k] = min(s[k], s[p])
            top[k] = top[p]
    kept = np.flatnonzero(keep)
    new_pos = np.full(rn.n, -1, dtype=np.int64)
    new_pos[kept] = np.arange(len(kept))
    only_child = np.full(rn.n, -1, dtype=np.int64)
    only_child[rn.parent[1:]] = np.arange(1, rn.n)
    owner = new_pos.copy()
    for k in range(rn.n - 1, 0, -1):  # children come after parents
        if not keep[k]:
            owner[k] = owner[only_child[k]]
    parent = np.where(kept > 0, new_pos[top[kept]], -1)
    return Chains(
        network=RadialNetwork(
            bus=rn.bus[kept],
            parent=parent,
            r_pu=r[kept],
            x_pu=x[kept],
            s_max_pu=s[kept],
            branch=[rn.branch[k] for k in kept],
            v_root_pu=rn.v_root_pu,
        ),
        owner=owner,
    )


def _branches(net: pp.pandapowerNet):
    """(from_bus, to_bus, kind, index, r_ohm_lv, x_ohm_lv, s_max_mva, vn_kv of 'to' side) rows."""
    rows = []
    bus_kv = net.bus.vn_kv
    line = net.line[net.line.in_service]
    open_line = set(
        net.switch[(net.switch.et == "l") & ~net.switch.closed].element.astype(int).tolist()
    )
    for i, ln in line.iterrows():
        if i in open_line:
            continue
        par = ln.parallel
        r = ln.r_ohm_per_km * ln.length_km / par
        x = ln.x_ohm_per_km * ln.length_km / par
        s = np.sqrt(3) * bus_kv[ln.to_bus] * ln.max_i_ka * par * ln.get("df", 1.0)
        rows.append((ln.from_bus, ln.to_bus, "line", i, r, x, s, bus_kv[ln.to_bus]))
    for i, tr in net.trafo[net.trafo.in_service].iterrows():
        z_base = tr.vn_lv_kv**2 / tr.sn_mva
        z = tr.vk_percent / 100 * z_base / tr.parallel
        r = tr.vkr_percent / 100 * z_base / tr.parallel
        s = tr.sn_mva * tr.parallel * tr.get("max_loading_percent", 100.0) / 100
        rows.append(
            (tr.hv_bus, tr.lv_bus, "trafo", i, r, np.sqrt(max(z * z - r * r, 0.0)), s, tr.vn_lv_kv)
        )
    bb = net.switch[(net.switch.et == "b") & net.switch.closed]
    for i, sw in bb.iterrows():
        rows.append((sw.bus, sw.element, "switch", i, 0.0, 0.0, np.inf, bus_kv[sw.bus]))
    return rows


def _merge_parallel(rows: list[tuple]) -> list[tuple]:
    """Branches joining the same two buses act as one: impedances in parallel, ratings added.
    The merged branch keeps the first one's identity (its loading is checked by the AC flow)."""
    by_pair: dict[tuple[int, int], tuple] = {}
    for row in rows:
        key = (min(int(row[0]), int(row[1])), max(int(row[0]), int(row[1])))
        old = by_pair.get(key)
        if old is None:
            by_pair[key] = row
            continue
        z1, z2 = complex(old[4], old[5]), complex(row[4], row[5])
        z = 0j if z1 == 0 or z2 == 0 else z1 * z2 / (z1 + z2)
        by_pair[key] = (*old[:4], z.real, z.imag, old[6] + row[6], old[7])
    return list(by_pair.values())


def radial_network(net: pp.pandapowerNet) -> RadialNetwork:
    """The tree of ``net`` seen from its ext_grid; FeederError if it is meshed or has no slack."""
    slack = net.ext_grid[net.ext_grid.in_service]
    if len(slack) != 1:
        raise FeederError(f"the feeder needs exactly one in-service ext_grid, has {len(slack)}")
    root = int(slack.bus.iloc[0])
    adj: dict[int, list[tuple[int, tuple]]] = {}
    for row in _merge_parallel(_branches(net)):
        a, b = int(row[0]), int(row[1])
        adj.setdefault(a, []).append((b, row))
        adj.setdefault(b, []).append((a, row))
    order, parent, feed = [root], {root: -1}, {root: None}
    queue = deque([root])
    seen_edges: set[tuple[str, int]] = set()
    while queue:
        a = queue.popleft()
        for b, row in adj.get(a, []):
            key = (row[2], int(row[3]))
            if key in seen_edges:
                continue
            seen_edges.add(key)
            if b in parent:
                raise FeederError(
                    f"the feeder is meshed ({row[2]} {row[3]} closes a loop); it must be radial"
                )
            parent[b], feed[b] = a, row
            order.append(b)
            queue.append(b)
    pos = {b: k for k, b in enumerate(order)}
    n = len(order)
    r = np.zeros(n)
    x = np.zeros(n)
    s = np.full(n, np.inf)
    branch: list[tuple[str, int] | None] = [None] * n
    for k, b in enumerate(order[1:], 1):
        row = feed[b]
        z_base = row[7] ** 2  # ohm per pu on 1 MVA at the receiving bus voltage
        r[k], x[k], s[k] = row[4] / z_base, row[5] / z_base, row[6]
        branch[k] = (row[2], int(row[3]))
    return RadialNetwork(
        bus=np.array(order, dtype=np.int64),
        parent=np.array([pos[parent[b]] if parent[b] != -1 else -1 for b in order], dtype=np.int64),
        r_pu=r,
        x_pu=x,
        s_max_pu=s,
        branch=branch,
        v_root_pu=float(slack.vm_pu.iloc[0]),
    )
