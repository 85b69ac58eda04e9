"""A household's devices now and its plan, in plain words, from its latest telemetry and plan
(``household_live``). Pure functions: the page renders them and its event stream sends them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from gridctl.core import W_PER_KW, interval_at, interval_start
from gridctl.protocol import PlanMessage, PlanStep, Telemetry

PLAN_STEPS = 24
"""Plan intervals shown from the current one on (6 hours of 15 minutes)."""
MODES = {
    "plan": "following the community's plan",
    "fallback": "on its own safe fallback (no fresh plan from the community)",
    "starting": "starting up",
}
"""What the controller is doing, by its telemetry's mode."""


_END = "\0end"
"""Past the last step: differs from every sentence, so the last run is said too."""


def _kw(p_w: float) -> str:
    return f"{abs(p_w) / W_PER_KW:.1f} kW"


def _power(p_w: float | None, positive: str, negative: str, zero: str) -> str:
    """A power in words (load convention: positive drawn, W); None: unknown."""
    if p_w is None:
        return "unknown (not measured)"
    if round(p_w / 100) == 0:  # under 0.05 kW
        return zero
    return f"{positive if p_w > 0 else negative} {_kw(p_w)}"


def _age(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s ago"
    if s < 7200:
        return f"{s // 60} min ago"
    return f"{s // 3600} h ago"


def devices_now(t: Telemetry, now_s: float) -> list[tuple[str, str]]:
    """The household's devices in plain words, (what, state), from telemetry ``t`` at epoch
    ``now_s`` (s). Powers follow the load convention (PV ≤ 0 producing, battery > 0 charging)."""
    battery = _power(t.battery_p_w, "charging at", "discharging at", "idle")
    if t.soc is not None:
        battery += f", {round(100 * t.soc)} % full"
    return [
        ("Solar panels", _power(t.pv_p_w, "drawing", "producing", "not producing")),
        ("Battery", battery),
        ("Car charger", _power(t.ev_p_w, "charging at", "feeding back", "not charging")),
        (
            "Grid connection",
            _power(
                t.grid_p_w,
                "drawing from the grid",
                "feeding into the grid",
                "neither drawing nor feeding",
            ),
        ),
        ("Devices with a fault", ", ".join(t.faulted) if t.faulted else "none"),
        ("Your controller", MODES[t.mode]),
        ("Measured", f"{_age(now_s - t.t.timestamp())} ({t.t:%H:%M:%S} UTC)"),
    ]


def _when(first: int, last: int) -> str:
    """Intervals first…last as "from HH:MM to HH:MM UTC" (with the day when it changes)."""
    a, b = interval_start(first), interval_start(last + 1)
    if (b - timedelta(seconds=1)).date() == a.date():  # ending at midnight: the same day
        return f"from {a:%H:%M} to {b:%H:%M} UTC"
    return f"from {a:%d %b %H:%M} to {b:%d %b %H:%M} UTC"


def _runs(steps: list[PlanStep], say: Callable[[PlanStep], str | None]) -> list[str]:
    """Sentences for runs of consecutive steps that ``say`` puts in the same words (None:
    nothing to say for that step)."""
    out: list[str] = []
    start, words = 0, say(steps[0]) if steps else None
    for k in range(1, len(steps) + 1):
        now = say(steps[k]) if k < len(steps) else _END
        if now != words:
            if words is not None:
                out.append(f"{words} {_when(steps[start].interval, steps[k - 1].interval)}")
            start, words = k, now
    return out


def _battery(s: PlanStep) -> str:
    if round(s.battery_w / 100) == 0:
        return "Your battery stays idle"
    return f"Your battery {'charges' if s.battery_w > 0 else 'discharges'} at {_kw(s.battery_w)}"


def _car(s: PlanStep) -> str | None:
    return f"Your car charges at {_kw(s.ev_w)}" if round(s.ev_w / 100) else None


def _export(s: PlanStep) -> str | None:
    if s.export_max_w is None:
        return None
    return f"Your home may feed at most {_kw(s.export_max_w)} into the grid"


def plan_lines(plan: PlanMessage, now_s: float) -> list[str]:
    """The plan's next ``PLAN_STEPS`` intervals from the one at epoch ``now_s`` on, as
    sentences ("Your battery charges at 2.1 kW from 12:00 to 13:30 UTC"); [] when none is
    left (a stale plan)."""
    now = interval_at(now_s)
    steps = [s for s in plan.steps if now <= s.interval < now + PLAN_STEPS]
    return [line for say in (_battery, _car, _export) for line in _runs(steps, say)]


def own_state(telemetry: Telemetry | None, plan: PlanMessage | None, now_s: float) -> dict:
    """What a household's page shows of its devices and plan (JSON-ready): ``devices``
    [[what, state], …] (None: no telemetry received) and ``plan`` [sentence, …] (None: no
    plan received; []: none for the coming hours)."""
    return {
        "devices": None if telemetry is None else devices_now(telemetry, now_s),
        "plan": None if plan is None else plan_lines(plan, now_s),
    }
