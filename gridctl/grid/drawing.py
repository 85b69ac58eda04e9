"""A feeder as something to draw: buses with coordinates, branches, households, and the state
of one power flow in stored integer units.

Buses are in breadth-first order from the slack (``radial_network``); coordinates come from the
network's own geodata (pandapower's ``bus.geo`` GeoJSON points, as SimBench feeders carry them)
when every bus has a point, and otherwise from a tree layout (the transformer at the top, each
level of the tree one row down). Each bus and branch knows how many households are downstream
of it (its subtree), which decides what may be shown publicly (``shown``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from gridctl.grid import LOADING_PPM_MAX, V_UPU_MAX
from gridctl.grid.ac import AcResult
from gridctl.grid.network import radial_network
from gridctl.settlement.canonical import canonical


@dataclass(frozen=True)
class Bus:
    """One bus: its pandapower index and name, its place in the drawing (x, y in 0–1, y down),
    its parent's position (-1: the root) and the households connected at it and below it."""

    index: int
    name: str
    x: float
    y: float
    parent: int
    households: int


@dataclass(frozen=True)
class Branch:
    """A line or transformer ("line" | "trafo") between two bus positions (``to`` is the end
    away from the slack), its pandapower index and name, and the households downstream of it."""

    kind: str
    index: int
    name: str
    frm: int
    to: int
    households: int


@dataclass(frozen=True)
class Drawing:
    """A feeder's topology for drawing. households: (id, bus position) of each household, in
    the community's order. geo: whether the coordinates are the network's own."""

    buses: list[Bus]
    branches: list[Branch]
    households: list[tuple[str, int]]
    geo: bool

    @property
    def topology_id(self) -> str:
        """A short digest of the buses, branches and household placement (a live message
        carries it, so values are never drawn on another topology)."""
        doc = [
            [(b.index, b.parent) for b in self.buses],
            [(r.kind, r.index, r.frm, r.to) for r in self.branches],
            [p for _, p in self.households],
        ]
        return hashlib.sha256(canonical(doc)).hexdigest()[:16]


@dataclass(frozen=True)
class State:
    """One power flow of the feeder, in stored units: each bus's voltage (µp.u.) and each
    branch's loading (ppm of its rating: 1,000,000 = 100 %), in the drawing's order."""

    interval: int
    v_upu: list[int]
    loading_ppm: list[int]


def drawing(net: pp.pandapowerNet, household_bus: np.ndarray, names: list[str]) -> Drawing:
    """The drawing of ``net`` with households ``names`` at pandapower buses ``household_bus``.
    FeederError if the feeder is not radial (``radial_network``)."""
    rn = radial_network(net)
    pos = {int(b): k for k, b in enumerate(rn.bus)}
    count = np.zeros(rn.n)
    for b in household_bus:
        count[pos[int(b)]] += 1
    below = rn.subtree_sum(count).astype(int)
    depth = np.zeros(rn.n, dtype=int)
    for k in range(1, rn.n):
        depth[k] = depth[rn.parent[k]] + 1
    xy = _geo(net, rn.bus)
    geo = xy is not None
    if xy is None:
        xy = tree_layout(rn.parent)
    buses = [
        Bus(int(b), str(net.bus.name.at[b]), float(xy[k, 0]), float(xy[k, 1]),
            int(rn.parent[k]), int(below[k]))
        for k, b in enumerate(rn.bus)
    ]  # fmt: skip
    branches = []
    for kind, table, a_col, b_col in (("trafo", net.trafo, "hv_bus", "lv_bus"),
                                      ("line", net.line, "from_bus", "to_bus")):  # fmt: skip
        for i, row in table[table.in_service].iterrows():
            a, b = pos.get(int(row[a_col])), pos.get(int(row[b_col]))
            if a is None or b is None:
                continue
            frm, to = (a, b) if depth[a] <= depth[b] else (b, a)
            branches.append(Branch(kind, int(i), str(row["name"]), frm, to, int(below[to])))
    placed = [(n, pos[int(b)]) for n, b in zip(names, household_bus, strict=True)]
    return Drawing(buses, branches, placed, geo)


def tree_layout(parent: np.ndarray) -> np.ndarray:
    """(N, 2) coordinates in 0–1 of a tree given each node's parent (-1: the root, parents
    before children): each leaf its own column in depth-first order, a parent centred over its
    children, one row per level from the root down."""
    n = len(parent)
    children: list[list[int]] = [[] for _ in range(n)]
    for k in range(1, n):
        children[parent[k]].append(k)
    depth = np.zeros(n)
    for k in range(1, n):
        depth[k] = depth[parent[k]] + 1
    x = np.zeros(n)
    leaves = 0
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        k, done = stack.pop()
        if done:
            x[k] = np.mean(x[children[k]])
        elif not children[k]:
            x[k], leaves = leaves, leaves + 1
        else:
            stack.append((k, True))
            stack.extend((c, False) for c in reversed(children[k]))
    xy = np.column_stack([x / max(leaves - 1, 1), depth / max(depth.max(), 1)])
    return xy


def _geo(net: pp.pandapowerNet, buses: np.ndarray) -> np.ndarray | None:
    """(N, 2) coordinates in 0–1 (y down, aspect kept) from the buses' GeoJSON points, None
    unless every bus has a finite one and they are not all in one place."""
    if "geo" not in net.bus:
        return None
    pts = []
    for b in buses:
        try:
            lon, lat = json.loads(net.bus.geo.at[b])["coordinates"][:2]
            pts.append((float(lon), float(lat)))
        except (TypeError, ValueError, KeyError, IndexError):
            return None
    xy = np.array(pts)
    if not np.isfinite(xy).all():
        return None
    xy[:, 0] *= math.cos(math.radians(float(np.mean(xy[:, 1]))))  # degrees of longitude shrink
    xy[:, 1] = -xy[:, 1]  # north up
    xy -= xy.min(axis=0)
    span = float(xy.max())
    return None if span == 0.0 else xy / span


def state(d: Drawing, net: pp.pandapowerNet, interval: int, res: AcResult) -> State:
    """The drawing's values from one power flow ``res`` of ``net`` (``AcFeeder.run``): its
    arrays follow pandapower's in-service buses and lines and all transformers."""
    bus_at = {int(b): k for k, b in enumerate(net.bus.index[net.bus.in_service])}
    line_at = {int(i): k for k, i in enumerate(net.line.index[net.line.in_service])}
    trafo_at = {int(i): k for k, i in enumerate(net.trafo.index)}
    v = [_stored(res.vm_pu[bus_at[b.index]] * 1e6, V_UPU_MAX) for b in d.buses]
    pct = [
        res.line_loading_pct[line_at[r.index]] if r.kind == "line"
        else res.trafo_loading_pct[trafo_at[r.index]]
        for r in d.branches
    ]  # fmt: skip
    loading = [_stored(x * 1e4, LOADING_PPM_MAX) for x in pct]
    return State(interval, v, loading)


def _stored(value: float, top: int) -> int:
    """A value rounded into 0…top (NaN, an unsolved element, as 0)."""
    return 0 if not math.isfinite(value) else min(max(round(value), 0), top)


def shown(d: Drawing, k: int) -> tuple[list[bool], list[bool]]:
    """Which buses and branches may show their figure publicly.

    A bus (with the branch feeding it) is shown only if at least ``k`` households are
    downstream of it: a line feeding fewer would tell what they draw. That alone is not
    enough, since two shown figures can be subtracted: a line feeding 6 homes and the line
    below it feeding 5 give away the sixth. So for each shown bus, its group (the households
    below it but below none of its nearest shown descendants: what subtraction reaches) must be
    empty or at least ``k``. Where it holds 1 … k-1 households, a shown descendant whose own
    group is at least ``k`` is withheld (the smallest; with the descendants between, whose
    groups are empty) so that its group joins; one always exists while the bus feeds ``k`` or
    more, so what is nearest the transformer stays. Buses are in breadth-first order.
    Returns (per bus, per branch) True where shown.
    """
    n = len(d.buses)
    cover = [b.households for b in d.buses]
    on = [c >= k for c in cover]
    below: list[list[int]] = [[] for _ in range(n)]  # nearest shown descendants of each bus

    def group(m: int) -> int:
        return cover[m] - sum(cover[x] for x in below[m])

    def nearest(xs: list[int]) -> list[int]:
        return [y for x in xs for y in ([x] if on[x] else nearest(below[x]))]

    for m in range(n - 1, -1, -1):  # children before parents
        if on[m] and 0 < group(m) < k:
            found: list[tuple[int, list[int]]] = []  # (bus with its own group ≥ k, buses above)
            stack = [(x, [x]) for x in below[m]]
            while stack:
                x, path = stack.pop()
                if group(x) >= k:
                    found.append((x, path))
                else:  # an empty group: its shown descendants feed all it feeds
                    stack += [(y, [*path, y]) for y in below[x]]
            _, path = min(found, key=lambda f: (cover[f[0]], len(f[1])))
            for x in path:
                on[x] = False
            below[m] = nearest(below[m])
        if d.buses[m].parent >= 0:
            below[d.buses[m].parent] += [m] if on[m] else below[m]
    return on, [on[r.to] for r in d.branches]
