"""Plain-language sentences about a household's cases and flexibility requests, built only from
what the ledger records (the request, its source, window and limit; what the plan asked, what
the meter showed, what was paid), never from guesses."""

from __future__ import annotations

from gridctl.core import MICRO, W_PER_KW, interval_start
from gridctl.settlement.flex_records import DeliveryRow, FlexEventRow

FEEDER = "feeder"
"""A request's target meaning the whole feeder (else it names a household)."""
SOURCES = {
    "events": "the events the grid operator gave the community",
    "openadr": "the grid operator's OpenADR server",
    "config": "the community's configuration",
}
"""How a request reached the community, by the source the ledger records."""


def _kwh(wh: int) -> str:
    return f"{wh / W_PER_KW:.1f} kWh"


def flex_line(ev: FlexEventRow, d: DeliveryRow) -> str:
    """One sentence about a flexibility request and what the household did for it."""
    start = interval_start(ev.first)
    end = interval_start(ev.last + 1)
    when = f"{start:%d %b} from {start:%H:%M} to {end:%H:%M} UTC"
    if end.date() != start.date():
        when = f"from {start:%d %b %H:%M} to {end:%d %b %H:%M} UTC"
    flow = "draw from" if ev.direction == "import" else "feed into"
    who = "the street's cable" if ev.target == FEEDER else "your home"
    via = SOURCES.get(ev.source, f"source {ev.source!r}")
    why = (f"the grid operator limited how much {who} may {flow} the grid to "
           f"{ev.limit_w / W_PER_KW:.1f} kW (request {ev.event}, received through "
           f"{via})")  # fmt: skip
    if d.asked_wh == 0:
        return (f"{when}: {why}. Your plan was not changed: your home had nothing it "
                "could move then (no battery or car wanting power), so nothing was asked "
                "of it.")  # fmt: skip
    change = "draw" if ev.direction == "import" else "feed"
    side = "from" if ev.direction == "import" else "into"
    lines = (f"{when}: your home's plan was changed to {change} {_kwh(d.asked_wh)} less {side} "
             f"the grid because {why}. Your meter showed {_kwh(d.response_wh)} less than planned "
             f"without the request, so {_kwh(d.delivered_wh)} counted as delivered")  # fmt: skip
    if d.delivered_wh == 0:
        return lines + ": nothing was paid for it."
    return (f"{lines}: you received {d.payment_micro / MICRO:.2f} and "
            f"{d.tokens_micro / MICRO:.2f} tokens.")  # fmt: skip


def case_line(interval: int, outcome: str, method: str, deviation_w: float | None) -> str:
    """One plain-language sentence about a physics case of a household."""
    at = interval_start(interval).strftime("%d %b %H:%M UTC")
    off = (
        f" (your meter's figure was {abs(deviation_w) / 1000:.1f} kW "
        f"{'above' if deviation_w < 0 else 'below'} what the feeder's physics supports)"
        if deviation_w is not None
        else ""
    )
    if outcome == "named":
        return f"{at}: the {method} check did not accept your meter's reading{off}, so no reward."
    return (
        f"{at}: your reward is held while the {method} check cannot confirm your "
        f"reading{off}; it is paid back once confirmed."
    )
