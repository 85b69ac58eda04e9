"""The linear feeder model against pandapower's AC power flow."""

import copy
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from gridctl.core import FeederError
from gridctl.grid.ac import AcFeeder
from gridctl.grid.feeder import load_feeder
from gridctl.grid.network import radial_network


@pytest.fixture(scope="module")
def rural():
    net, _ = load_feeder("1-LV-rural1--0-sw", None, Path("."))
    return net


def test_tree_is_ordered_from_the_slack(rural) -> None:
    rn = radial_network(rural)
    assert rn.parent[0] == -1 and rn.n == len(rural.bus)
    assert all(rn.parent[k] < k for k in range(1, rn.n))  # parents come first
    assert rn.branch[1] == ("trafo", 0)
    np.testing.assert_allclose(rn.subtree_sum(np.ones(rn.n))[0], rn.n)


def test_linear_voltages_match_ac_within_a_millivolt_per_volt(rural) -> None:
    """After a no-load calibration, LinDistFlow stays within 0.001 p.u. of AC up to 15 kW per home."""
    rn = radial_network(rural)
    buses = rural.load.bus.to_numpy()
    ac = AcFeeder(rural, buses, [f"h{k}" for k in range(len(buses))])
    pos = rn.position(buses)

    def linear(p_w, q_w):
        pb, qb = np.zeros(rn.n), np.zeros(rn.n)
        np.add.at(pb, pos, p_w / 1e6)
        np.add.at(qb, pos, q_w / 1e6)
        return rn.voltage_sq(pb, qb)

    zero = np.zeros(len(buses))
    ac.run(zero, zero)
    offset = ac.vm_pu(rn.bus) ** 2 - linear(zero, zero)
    rng = np.random.default_rng(4)
    worst = 0.0
    for scale_w in (-15_000, -8_000, 5_000, 15_000):
        p = rng.uniform(0.3, 1.0, len(buses)) * scale_w
        q = np.where(p > 0, 0.33 * p, 0.0)
        ac.run(p, q)
        worst = max(worst, np.abs(np.sqrt(linear(p, q) + offset) - ac.vm_pu(rn.bus)).max())
    assert worst < 0.001


def test_meshed_or_slackless_feeders_are_refused(rural) -> None:
    meshed = copy.deepcopy(rural)
    lv = meshed.bus.index[meshed.bus.vn_kv < 1].tolist()
    pp.create_line_from_parameters(meshed, lv[-1], lv[-2], 0.1, 0.2, 0.1, 10, 0.2)
    with pytest.raises(FeederError, match="meshed"):
        radial_network(meshed)
    orphan = copy.deepcopy(rural)
    orphan.ext_grid["in_service"] = False
    with pytest.raises(FeederError, match="ext_grid"):
        radial_network(orphan)


def test_pruning_keeps_only_paths_to_households(rural) -> None:
    from gridctl.grid.network import prune

    rn = radial_network(rural)
    far = rn.bus[-1]
    small = prune(rn, np.array([far]))
    path = [rn.n - 1]
    while rn.parent[path[-1]] >= 0:
        path.append(rn.parent[path[-1]])
    assert sorted(small.bus.tolist()) == sorted(rn.bus[path].tolist())
    assert all(small.parent[k] < k for k in range(1, small.n))
    # the far bus sees the same linear voltage in both models
    p = np.zeros(rn.n)
    p[-1] = -0.02
    ps = np.zeros(small.n)
    ps[small.position(np.array([far]))] = -0.02
    assert rn.voltage_sq(p, np.zeros(rn.n))[-1] == pytest.approx(
        small.voltage_sq(ps, np.zeros(small.n))[small.position(np.array([far]))[0]]
    )


def test_merged_runs_keep_the_linear_voltages_and_flows(rural) -> None:
    """Merging unbranched runs changes no kept bus's voltage or flow, and every merged branch is
    no stronger than the weakest original branch of its run."""
    from gridctl.grid.network import merge_chains, prune

    rn = radial_network(rural)
    buses = rural.load.bus.to_numpy()[::3]
    full = prune(rn, buses)
    chains = merge_chains(full, full.position(buses))
    small = chains.network
    assert small.n < full.n and all(small.parent[k] < k for k in range(1, small.n))
    rng = np.random.default_rng(2)
    p_h, q_h = rng.uniform(-0.02, 0.02, len(buses)), rng.uniform(0, 0.005, len(buses))
    pf, qf = np.zeros(full.n), np.zeros(full.n)
    np.add.at(pf, full.position(buses), p_h)
    np.add.at(qf, full.position(buses), q_h)
    ps, qs = np.zeros(small.n), np.zeros(small.n)
    np.add.at(ps, small.position(buses), p_h)
    np.add.at(qs, small.position(buses), q_h)
    kept = full.position(small.bus)
    np.testing.assert_allclose(small.voltage_sq(ps, qs), full.voltage_sq(pf, qf)[kept])
    np.testing.assert_allclose(small.subtree_sum(ps), full.subtree_sum(pf)[kept])
    # every original bus belongs to a merged branch whose flow equals its own
    np.testing.assert_allclose(full.subtree_sum(pf)[1:], small.subtree_sum(ps)[chains.owner[1:]])
    weakest = np.full(small.n, np.inf)
    np.minimum.at(weakest, chains.owner[1:], full.s_max_pu[1:])
    np.testing.assert_array_equal(small.s_max_pu[1:], weakest[1:])
