import numpy as np

from gridctl.sim.physics import battery_step, ev_step, meter_step, pv_step


def test_battery_respects_energy_limits_and_losses() -> None:
    p, e = battery_step(
        np.array([5000.0, -5000.0]),
        np.array([9500.0, 600.0]),
        np.full(2, 500.0),
        np.full(2, 10_000.0),
        np.full(2, 5000.0),
        np.full(2, 0.9),
        0.25,
    )
    # charging stops at full: 500 Wh of room needs 500 / 0.9 Wh from the bus
    assert p[0] == np.float64(500.0 / 0.9 / 0.25)
    np.testing.assert_allclose(e, [10_000.0, 500.0])
    # discharging stops at soc_min: 100 Wh stored give 90 Wh to the bus
    np.testing.assert_allclose(p[1], -100.0 * 0.9 / 0.25)


def test_ev_never_exceeds_need_or_charger() -> None:
    p = ev_step(
        np.array([11_000.0, 11_000.0, 5000.0]),
        np.array([7400.0, 11_000.0, 0.0]),
        np.array([10_000.0, 1000.0, 5000.0]),
        0.25,
    )
    np.testing.assert_allclose(p, [7400.0, 4000.0, 0.0])


def test_pv_limit_and_meter_counters() -> None:
    np.testing.assert_allclose(
        pv_step(np.array([-5000.0, -2000.0]), np.array([3000.0, np.inf])), [-3000.0, -2000.0]
    )
    imp, exp = meter_step(
        np.array([10.0, 10.0]), np.array([0.0, 0.0]), np.array([4000.0, -2000.0]), 0.25
    )
    np.testing.assert_allclose(imp, [1010.0, 10.0])
    np.testing.assert_allclose(exp, [0.0, 500.0])


def test_ev_setpoints_below_the_chargers_minimum_charge_nothing() -> None:
    p = ev_step(
        np.array([4000.0, 4140.0, 11_000.0, 1000.0]),
        np.array([11_000.0, 11_000.0, 11_000.0, 3700.0]),
        np.array([10_000.0, 10_000.0, 500.0, 10_000.0]),
        0.25,
        np.array([4140.0, 4140.0, 4140.0, 1380.0]),
    )
    # below 6 A x 3 phases: nothing; at it: as asked; a nearly full car may take less
    np.testing.assert_allclose(p, [0.0, 4140.0, 2000.0, 0.0])
