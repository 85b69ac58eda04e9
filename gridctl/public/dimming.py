"""§14a EnWG dimming: how far a grid operator's dimming signal may cap a household's
controllable consumers (pure: no I/O).

Legal basis: §14a EnWG lets the German grid operator reduce the grid draw of controllable
consumers ("steuerbare Verbrauchseinrichtungen": private EV chargers, heat pumps, air
conditioning, batteries as they charge from the grid; above 4.2 kW, on the low-voltage grid)
when a grid element threatens to overload. The Bundesnetzagentur's Festlegung BK6-22-300
(Anlage 1, in force since 1 January 2024) guarantees each directly controlled device at least
4.2 kW (``MIN_14A_W``; a heat pump or air conditioner above 11 kW 40 % of its rating, which
gridctl, having no heat-pump role, does not model). Behind an energy management system the
operator may instead cap the devices' sum at 4.2 kW + (n - 1) x GZF x 4.2 kW, GZF falling from
0.8 for two devices to 0.45 from nine.

What gridctl implements is the per-device guarantee, whatever the signal: a household's
controllable devices (charger, battery charging) share a cap on their sum, W (0: dimmed to
the guarantee alone, the direct-control command), water-filled (a device wishing less than an
equal share keeps its wish, the others split the rest); each device is then allowed
``min(wish, max(MIN_14A_W, share))``. So no device is held below ``min(4.2 kW, its wish)`` and
none that wants power gets 0; a sum cap below what the guarantees need is exceeded by them
(gridctl never uses the smaller EMS total, which could leave a device under 4.2 kW).
"""

from __future__ import annotations

import numpy as np

MIN_14A_W = 4200.0
"""Power every dimmed controllable device keeps, W (BK6-22-300: 4.2 kW)."""


def shares_w(wish_w: np.ndarray, cap_w: np.ndarray | float) -> np.ndarray:
    """Each device's water-filled share of its household's cap, W (≥ 0).

    wish_w: what each device would draw, W (≥ 0), (..., n devices).
    cap_w: the cap on the devices' sum, W (≥ 0), (...) or one number.
    Returns (..., n), summing to min(cap, sum of wishes) per household.
    """
    wish = np.maximum(np.asarray(wish_w, dtype=float), 0.0)
    n = wish.shape[-1]
    order = np.argsort(wish, axis=-1)
    ranked = np.take_along_axis(wish, order, axis=-1)
    left = np.broadcast_to(np.maximum(np.asarray(cap_w, dtype=float), 0.0), wish.shape[:-1])
    left = left.copy()
    got = np.empty_like(ranked)
    for k in range(n):  # smallest wish first: whoever wants less than a fair share keeps it
        got[..., k] = np.minimum(ranked[..., k], left / (n - k))
        left = left - got[..., k]
    out = np.empty_like(got)
    np.put_along_axis(out, order, got, axis=-1)
    return out


def allowed_w(wish_w: np.ndarray, cap_w: np.ndarray | float) -> np.ndarray:
    """What each controllable device may draw while dimmed, W (≥ 0, load convention):
    ``min(wish, max(MIN_14A_W, share))`` (see the module doc).

    wish_w: what each device would draw, W, (..., n devices); cap_w: the cap on their sum, W.
    """
    wish = np.maximum(np.asarray(wish_w, dtype=float), 0.0)
    return np.minimum(wish, np.maximum(MIN_14A_W, shares_w(wish, cap_w)))


def ev_floor_w(
    max_w: np.ndarray | float,
    left_wh: np.ndarray | float,
    ev_min_w: np.ndarray | float,
    dt_h: float,
) -> np.ndarray:
    """Each charger's §14a minimum, W (≥ 0): min(MIN_14A_W, what its car can take in one
    interval), raised to the charger's own minimum (IEC 61851, ``ev_min_w``, W) where that is
    more (the car takes only what it needs), within the charger's limit; 0 for no car or a
    car that needs nothing.

    max_w: charger limit now, W (0: no car). left_wh: energy the car still needs, Wh (``inf``:
    unknown, as to a controller, which cannot see the car's state of charge). dt_h: h.
    """
    max_w = np.asarray(max_w, dtype=float)
    can_w = np.minimum(max_w, np.maximum(left_wh, 0.0) / dt_h)
    floor_w = np.minimum(MIN_14A_W, can_w)
    return np.where(floor_w > 0, np.minimum(np.maximum(floor_w, ev_min_w), max_w), 0.0)


def dimmed_household_w(
    ev_w: np.ndarray | float,
    ev_floor_w: np.ndarray | float,
    battery_w: np.ndarray | float,
    cap_w: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """A dimmed household's charger and battery powers, W, load convention (elementwise).

    ev_w: the charger power asked for (plan or local policy), W (≥ 0).
    ev_floor_w: the charger's §14a minimum, W (≥ 0): min(MIN_14A_W, what its car can take),
    0 without a car that wants power; while dimmed it is asked at least this much.
    battery_w: the battery power asked for, W (> 0 charging): only charging is dimmed.
    cap_w: the cap on their sum, W (≥ 0; 0: each at most its guarantee).
    Returns (charger W ≥ min(ev_floor_w, MIN_14A_W), battery W).
    """
    ev = np.maximum(np.asarray(ev_w, dtype=float), np.asarray(ev_floor_w, dtype=float))
    bat = np.asarray(battery_w, dtype=float)
    ev, bat = np.broadcast_arrays(ev, bat)
    allowed = allowed_w(np.stack([ev, np.maximum(bat, 0.0)], axis=-1), cap_w)
    return allowed[..., 0], np.where(bat > 0, allowed[..., 1], bat)
