"""What the grid operator has in force in an interval, as the community may say it publicly.

Limits on the feeder (its transformer) are stated with their values; limits on households'
own connections only as a count per source (a household's limit is its own). A flexibility
request is listed as an event, not again as the envelope it sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gridctl.protocol import MAX_COMMUNITY_W, MAX_EPOCH_S, MAX_IN_FORCE, InForce
from gridctl.public.envelope import FEEDER, Limit
from gridctl.public.flex_event import FlexEvent


def in_force(
    limits: Sequence[tuple[str, Limit]], events: Sequence[tuple[FlexEvent, str]]
) -> list[InForce]:
    """The envelopes and events in force, feeder first, at most ``MAX_IN_FORCE``.

    limits: (source, limit) of every envelope limit in force. events: (request, source) of
    every flexibility request whose window covers the interval.
    """
    out: list[InForce] = []
    homes: dict[tuple[str, str, str | None], list[tuple[str, float, float]]] = {}
    for ev, source in events:
        if ev.target == FEEDER:
            out.append(InForce(kind="event", source=source[:64], event_id=ev.event_id[:64],
                               import_max_w=_w(ev.import_max_w), export_max_w=_w(ev.export_max_w),
                               start_s=_s(ev.start_s), end_s=_s(ev.end_s)))  # fmt: skip
        else:
            homes.setdefault(("event", source, ev.event_id), []).append(
                (ev.target, ev.start_s, ev.end_s)
            )
    for source, lim in limits:
        if any(ev.sets(lim) for ev, _ in events):
            continue
        if lim.target == FEEDER:
            out.append(InForce(
                kind="envelope", source=source[:64], import_max_w=_w(lim.import_max_w),
                export_max_w=_w(lim.export_max_w), controllable_max_w=_w(lim.controllable_max_w),
                start_s=_s(lim.start_s + lim.ramp_s), end_s=_s(lim.end_s),
            ))  # fmt: skip
        else:
            homes.setdefault(("envelope", source, None), []).append(
                (lim.target, lim.start_s + lim.ramp_s, lim.end_s)
            )
    for (kind, source, event_id), hs in homes.items():
        out.append(InForce(kind=kind, source=source[:64],  # type: ignore[arg-type]
                           event_id=None if event_id is None else event_id[:64],
                           households=len({h for h, _, _ in hs}),
                           start_s=_s(min(a for _, a, _ in hs)),
                           end_s=_s(max(b for _, _, b in hs))))  # fmt: skip
    return out[:MAX_IN_FORCE]


def _w(x: float) -> int | None:
    """A limit as a message states it: whole W within bounds, None for none (inf)."""
    return None if math.isinf(x) else min(round(x), MAX_COMMUNITY_W)


def _s(t: float) -> int:
    return min(max(round(t), 0), MAX_EPOCH_S)
