import numpy as np

from gridctl.settlement.readings import check_readings


def test_readings_are_verified_or_rejected_with_a_reason() -> None:
    prev_i = np.array([100.0, 100.0, 100.0, 100.0])
    prev_e = np.array([0.0, 0.0, 0.0, np.nan])
    cur_i = np.array([150.0, 90.0, 100.0 + 5000.0, 120.0])
    cur_e = np.array([0.0, 0.0, 0.0, 0.0])
    max_wh = np.full(4, 4000.0)
    c = check_readings(prev_i, prev_e, cur_i, cur_e, max_wh)
    assert c.status == ["verified", "rejected", "rejected", "rejected"]
    assert c.reason == [None, "counter_decrease", "implausible", "missing"]
    assert c.import_wh.tolist() == [50, 0, 0, 0]


def test_energy_within_margin_passes() -> None:
    c = check_readings(
        np.zeros(1), np.zeros(1), np.array([4199.0]), np.zeros(1), np.array([4000.0])
    )
    assert c.status == ["verified"]
