"""Plan steps from a rolling plan: the export envelope a held interval sets."""

import numpy as np

from gridctl.dispatch.rolling import RollingPlanner
from tests.dispatch.test_community import _problem


def test_a_held_interval_limits_exports_to_the_plan() -> None:
    r = RollingPlanner(guard=None)
    r.replan(100, _problem(), np.zeros((2, 4)))
    assert r.plan is not None
    free = r.steps(["a", "b"], 100)
    assert all(s.export_max_w is None for steps in free.values() for s in steps)
    r.hold_exports(101)
    held = r.steps(["a", "b"], 100)
    net_w = r.plan.net_w[:, 1]
    assert net_w[0] < 0 < net_w[1]  # a exports its PV surplus, b imports
    for k, h in enumerate(["a", "b"]):
        assert held[h][0].export_max_w is None  # only interval 101 is held
        assert held[h][1].export_max_w == max(-float(net_w[k]), 0.0)
