"""MQTT protocol v1: topic names, versioned message schemas, decoding with counted rejects.

Topics (DESIGN.md)::

    gridctl/v1/<community>/<household>/telemetry   controller → coordinator, QoS 0, retained
    gridctl/v1/<community>/<household>/reading     controller → coordinator, QoS 1
    gridctl/v1/<community>/<household>/plan        coordinator → controller, QoS 1, retained
    gridctl/v1/<community>/<household>/status     "online" / "offline" (last will), retained
    gridctl/v1/<community>/<household>/vote        a member's signed vote → coordinator, QoS 1
    gridctl/v1/<community>/coordinator/<name>      status, prices, roots, parameters, opendata,
                                                   plan (the community's plan), feeder (broadcasts)

An interval's root (``RootMessage``, ``gridctl.settlement.roots``) is signed by the
coordinator's key and chained to the previous root; its public aggregates (``OpenDataMessage``,
``gridctl.settlement.aggregates``) are the ledger's row of them, which the root covers. A vote
(``VoteMessage``, ``gridctl.governance.votes``) is signed by a member key; one naming another
household than its topic passes ``decode`` so that the coordinator records it, refused, with
the others.

Every JSON message carries ``"v": 1``. A payload over ``MAX_PAYLOAD_BYTES``, on an unknown
topic, not JSON, of another version, with a bad field, or naming another household than its
topic is refused with a ``ProtocolError`` whose ``reason`` is one of ``REASONS``; a receiver
counts and logs it (``RejectCounter``) and goes on. Powers follow the load convention (W,
positive = drawn from the grid); energies are Wh; times are UTC.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from gridctl.core import GridctlError, StrictModel, describe_validation_error
from gridctl.governance.votes import VoteMessage
from gridctl.grid import LOADING_PPM_MAX, V_UPU_MAX
from gridctl.settlement.aggregates import OpenDataMessage
from gridctl.settlement.roots import RootMessage
from gridctl.settlement.signing import ReadingMessage

log = logging.getLogger(__name__)

VERSION = 1
READING_VERSIONS = (1, 2)
"""Reading formats a reading message may carry (2: with the interval's voltage; see
``settlement.signing``)."""
ROOT = f"gridctl/v{VERSION}"
MAX_PAYLOAD_BYTES = 16 * 1024
"""Largest payload accepted on any topic, bytes (a 2-day plan is about 9 kB)."""
MAX_PLAN_STEPS = 192
MAX_POWER_W = 1e7
"""Largest power magnitude any message may state, W (10 MW: far beyond any household)."""
MAX_INTERVAL = 2**40
"""Largest interval index any message may name (year ~31 million: any stored width holds it)."""
MAX_PRICE_PER_KWH = 1e3
NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
COORDINATOR = "coordinator"
"""The reserved topic level (and broker user) of the community coordinator."""

HouseholdKind = Literal["telemetry", "reading", "plan", "status", "vote"]
HOUSEHOLD_KINDS: tuple[str, ...] = ("telemetry", "reading", "plan", "status", "vote")
BROADCASTS: tuple[str, ...] = (
    "status",
    "prices",
    "root",
    "parameters",
    "opendata",
    "plan",
    "feeder",
)
REASONS = (
    "too_large",
    "bad_topic",
    "not_json",
    "bad_version",
    "bad_field",
    "wrong_household",
)
"""Why ``decode`` refuses a message; receivers add their own (rate limits, clocks, keys)."""
STATUS_WORDS = (b"online", b"offline")


class ProtocolError(GridctlError):
    """A message was refused; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_name(name: str, what: str = "household") -> str:
    """A community or household id if it is 1-32 of ``A-Z a-z 0-9 _ -`` (not 'coordinator')."""
    if not NAME.match(name) or (what == "household" and name == COORDINATOR):
        raise GridctlError(
            f"{what} id {name!r}: use 1-32 characters of A-Z a-z 0-9 _ - (not {COORDINATOR!r})"
        )
    return name


def household_topic(community: str, household: str, kind: HouseholdKind) -> str:
    """Topic of one household's ``kind`` of message."""
    return f"{ROOT}/{community}/{household}/{kind}"


def coordinator_topic(community: str, name: str) -> str:
    """Topic of a community broadcast (``status``, ``prices``, ``root``)."""
    return f"{ROOT}/{community}/{COORDINATOR}/{name}"


def community_filter(community: str) -> str:
    """Subscription filter for every topic of a community."""
    return f"{ROOT}/{community}/#"


Power = Annotated[float, Field(ge=-MAX_POWER_W, le=MAX_POWER_W)]
"""A power, W, finite and within ±MAX_POWER_W (NaN and infinities are refused)."""
Interval = Annotated[int, Field(ge=0, le=MAX_INTERVAL)]
Price = Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]


class _Msg(StrictModel):
    v: Literal[1] = 1


class Telemetry(_Msg):
    """A controller's live state. Powers in W, load convention; None = unknown (not zero).

    mode: "plan" (following the coordinator), "fallback" (local self-consumption) or
    "starting". plan_interval: interval of the plan step being applied, if any.
    faulted: devices the controller currently marks faulted.
    """

    household: str = Field(pattern=NAME.pattern)
    t: AwareDatetime
    mode: Literal["plan", "fallback", "starting"]
    grid_p_w: Power | None = None
    pv_p_w: Annotated[Power, Field(le=0)] | None = None
    battery_p_w: Power | None = None
    ev_p_w: Annotated[Power, Field(ge=0)] | None = None
    soc: Annotated[float, Field(ge=0, le=1)] | None = None
    plan_interval: Interval | None = None
    faulted: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=16)] = Field(
        default_factory=list
    )


class PlanStep(StrictModel):
    """One interval of a household's plan. W, load convention.

    battery_w: battery setpoint (> 0 charging). ev_w: EV charging power (≥ 0).
    export_max_w / import_max_w: envelope at the connection (≥ 0; None = no limit).
    controllable_max_w: §14a EnWG dimming in force: cap on the sum of the household's
    controllable devices (≥ 0; 0: each at its guaranteed minimum; ``gridctl.public.dimming``);
    None = not dimmed, and then left out of the message, so a controller that predates the
    field takes every plan that dims nobody.
    """

    interval: Interval
    battery_w: Power = 0.0
    ev_w: Annotated[Power, Field(ge=0)] = 0.0
    export_max_w: Annotated[Power, Field(ge=0)] | None = None
    import_max_w: Annotated[Power, Field(ge=0)] | None = None
    controllable_max_w: Annotated[Power, Field(ge=0)] | None = None

    @model_serializer(mode="wrap")
    def _without_dimming_if_none(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        if out.get("controllable_max_w", 0) is None:
            del out["controllable_max_w"]
        return out


class PlanMessage(_Msg):
    """The coordinator's plan for one household: consecutive intervals from the first step."""

    household: str = Field(pattern=NAME.pattern)
    issued: Interval
    """Interval in which the plan was made."""
    steps: Annotated[list[PlanStep], Field(min_length=1, max_length=MAX_PLAN_STEPS)]
    readings_through: Interval | None = None
    """Interval up to which the coordinator holds this household's readings (an ack)."""

    @model_validator(mode="after")
    def _consecutive(self) -> PlanMessage:
        first = self.steps[0].interval
        for k, s in enumerate(self.steps):
            if s.interval != first + k:
                raise ValueError(f"steps[{k}].interval is {s.interval}, expected {first + k}")
        return self

    def step(self, interval: int) -> PlanStep | None:
        """The step for ``interval``, None when the plan does not cover it."""
        k = interval - self.steps[0].interval
        return self.steps[k] if 0 <= k < len(self.steps) else None


class PriceMessage(_Msg):
    """Prices for an interval on, currency per kWh."""

    interval: Interval
    import_per_kwh: Price
    feed_in_per_kwh: Price
    community_per_kwh: Price


class ScheduledChange(StrictModel):
    """A passed proposal's change, in force from ``enact_at``."""

    proposal: Annotated[int, Field(ge=1, le=MAX_INTERVAL)]
    parameter: Annotated[str, Field(max_length=64)]
    value: (
        Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]
        | Annotated[str, Field(max_length=256)]
    )
    enact_at: Interval


class ParametersMessage(_Msg):
    """The governed parameters in force at ``interval`` and the changes passed votes have
    scheduled (a timelock: controllers and the grid operator see them coming)."""

    interval: Interval
    values: Annotated[
        dict[
            Annotated[str, Field(max_length=64)],
            Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]
            | Annotated[str, Field(max_length=64)],
        ],
        Field(max_length=64),
    ]
    scheduled: Annotated[list[ScheduledChange], Field(default_factory=list, max_length=256)]


# --- the community's plan (coordinator/plan) -------------------------------------------------
MAX_COMMUNITY_W = 10**9
"""Largest community-level power a message or plan log row may state, W (1 GW)."""
MAX_IN_FORCE = 32
"""Envelopes and events in force one community plan may list."""
MAX_EPOCH_S = 2**40
CommunityW = Annotated[int, Field(ge=-MAX_COMMUNITY_W, le=MAX_COMMUNITY_W)]
LimitW = Annotated[int, Field(ge=0, le=MAX_COMMUNITY_W)]
EpochS = Annotated[int, Field(ge=0, le=MAX_EPOCH_S)]
PLAN_FIGURES = ("load_w", "pv_w", "trafo_w", "battery_w", "ev_w", "shared_w", "curtail_w")
"""A community plan's sums, withheld together when they cover fewer than k households."""


class InForce(StrictModel):
    """A grid-operator envelope or flexibility event in force in a planned interval.

    kind: "envelope" (a limit) or "event" (a flexibility request, which also sets a limit).
    source: where it came from (an OpenADR VTN, the configuration, a §14a signal).
    households: 0 for the feeder (its transformer); else how many households' own connections
    it limits (their limits are theirs: only feeder limits are stated).
    import_max_w / export_max_w / controllable_max_w: the feeder's limit, W ≥ 0 (None: none
    that way; controllable: §14a dimming of every household's controllable devices).
    start_s / end_s: when it binds (after any ramp), epoch s, UTC.
    """

    kind: Literal["envelope", "event"]
    source: Annotated[str, Field(max_length=64)]
    event_id: Annotated[str, Field(max_length=64)] | None = None
    households: Annotated[int, Field(ge=0, le=10**6)] = 0
    import_max_w: LimitW | None = None
    export_max_w: LimitW | None = None
    controllable_max_w: LimitW | None = None
    start_s: EpochS
    end_s: EpochS


class CommunityPlanMessage(_Msg):
    """The community's plan for ``interval`` (MQTT ``coordinator/plan``, retained), summed over
    its ``households``: W, integers, load convention; None: withheld (covering fewer than ``k``
    households) or not known.

    load_w: forecast base load (≥ 0). pv_w: forecast PV (≤ 0). trafo_w: planned transformer
    power (> 0 drawn from the grid). battery_w / ev_w: planned battery (> 0 charging) and EV
    charging power. shared_w: planned power one household uses of another's (≥ 0).
    curtail_w: PV the plan holds back (≥ 0). feeder_import_max_w / feeder_export_max_w: the
    feeder's envelope (None: none). in_force: the envelopes and events in force.
    """

    interval: Interval
    households: Annotated[int, Field(ge=0, le=10**6)]
    k: Annotated[int, Field(ge=1, le=10**6)]
    load_w: Annotated[int, Field(ge=0, le=MAX_COMMUNITY_W)] | None = None
    pv_w: Annotated[int, Field(ge=-MAX_COMMUNITY_W, le=0)] | None = None
    trafo_w: CommunityW | None = None
    battery_w: CommunityW | None = None
    ev_w: Annotated[int, Field(ge=0, le=MAX_COMMUNITY_W)] | None = None
    shared_w: Annotated[int, Field(ge=0, le=MAX_COMMUNITY_W)] | None = None
    curtail_w: Annotated[int, Field(ge=0, le=MAX_COMMUNITY_W)] | None = None
    feeder_import_max_w: LimitW | None = None
    feeder_export_max_w: LimitW | None = None
    in_force: Annotated[list[InForce], Field(default_factory=list, max_length=MAX_IN_FORCE)]

    def public(self) -> CommunityPlanMessage:
        """This plan as it may be published: the sums None when they cover fewer than k."""
        if self.households >= self.k:
            return self
        return self.model_copy(update=dict.fromkeys(PLAN_FIGURES))


MAX_FEEDER_ELEMENTS = 600
"""Most buses (and most branches) a feeder message describes (so it stays within
``MAX_PAYLOAD_BYTES``)."""


class FeederMessage(_Msg):
    """The feeder in the interval the coordinator is executing, as it planned it and checked it
    with an AC power flow (not measured): each bus's voltage (µp.u.) and each branch's loading
    (ppm of its rating) in the order of the coordinator's drawing (``grid.sqlite``, whose
    ``topology`` id it names); None where the public diagram withholds the figure (fewer than
    the community's k households downstream, or fewer singled out by subtracting another:
    ``gridctl.grid.drawing.shown``)."""

    interval: Interval
    kind: Literal["planned"] = "planned"
    topology: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    v_upu: Annotated[
        list[Annotated[int, Field(strict=True, ge=0, le=V_UPU_MAX)] | None],
        Field(min_length=1, max_length=MAX_FEEDER_ELEMENTS),
    ]
    loading_ppm: Annotated[
        list[Annotated[int, Field(strict=True, ge=0, le=LOADING_PPM_MAX)] | None],
        Field(max_length=MAX_FEEDER_ELEMENTS),
    ]


Message = (
    Telemetry | ReadingMessage | PlanMessage | PriceMessage | RootMessage | ParametersMessage
    | VoteMessage | OpenDataMessage | CommunityPlanMessage | FeederMessage | str
)  # fmt: skip

_SCHEMAS: dict[str, type[BaseModel]] = {
    "telemetry": Telemetry,
    "reading": ReadingMessage,
    "plan": PlanMessage,
    "prices": PriceMessage,
    "root": RootMessage,
    "parameters": ParametersMessage,
    "vote": VoteMessage,
    "opendata": OpenDataMessage,
    "feeder": FeederMessage,
}


@dataclass(frozen=True)
class Decoded:
    """A message that passed every check. household: None for community broadcasts.

    message: the validated model, or the status word ("online" / "offline").
    """

    community: str
    household: str | None
    kind: str
    message: Message


def parse_topic(topic: str) -> tuple[str, str | None, str]:
    """(community, household or None for the coordinator, kind) of a v1 topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT or not all(map(NAME.match, parts[2:4])):
        raise ProtocolError("bad_topic", f"not a {ROOT} topic: {topic[:120]!r}")
    community, who, kind = parts[2], parts[3], parts[4]
    if who == COORDINATOR:
        if kind not in BROADCASTS:
            raise ProtocolError("bad_topic", f"unknown broadcast {kind[:40]!r}")
        return community, None, kind
    if kind not in HOUSEHOLD_KINDS:
        raise ProtocolError("bad_topic", f"unknown message kind {kind[:40]!r}")
    return community, who, kind


def decode(topic: str, payload: bytes) -> Decoded:
    """Check and parse one received message; ProtocolError (with a reason) if refused."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    community, household, kind = parse_topic(topic)
    if kind == "status":
        if payload not in STATUS_WORDS:
            raise ProtocolError(
                "bad_field", f"status must be online or offline, not {payload[:20]!r}"
            )
        return Decoded(community, household, kind, payload.decode())
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError("not_json", str(e)[:120]) from None
    if not isinstance(raw, dict):
        raise ProtocolError("not_json", f"expected a JSON object, got {type(raw).__name__}")
    versions = READING_VERSIONS if kind == "reading" else (VERSION,)
    if type(raw.get("v")) is not int or raw["v"] not in versions:
        raise ProtocolError(
            "bad_version", f"v={str(raw.get('v'))[:20]} ({kind} versions: {versions})"
        )
    schema = CommunityPlanMessage if household is None and kind == "plan" else _SCHEMAS[kind]
    try:
        msg = schema.model_validate(raw)
    except ValidationError as e:
        raise ProtocolError("bad_field", describe_validation_error(e)[:200]) from None
    if household is not None and kind != "vote":
        owner = msg.meter.split("/")[0] if isinstance(msg, ReadingMessage) else msg.household  # type: ignore[attr-defined]
        if owner != household:
            raise ProtocolError("wrong_household", f"{kind} of {owner!r} on {household!r}'s topic")
    return Decoded(community, household, kind, msg)  # type: ignore[arg-type]


def encode(message: BaseModel | str) -> bytes:
    """Wire bytes of a message (compact JSON; a status word as plain ASCII)."""
    if isinstance(message, str):
        return message.encode()
    return message.model_dump_json(exclude_none=False).encode()


class RejectCounter:
    """Counts refused messages by reason and logs each one (topic, reason, detail)."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.last_reason: str | None = None

    @property
    def total(self) -> int:
        """Messages refused so far."""
        return sum(self.by_reason.values())

    def decode(self, topic: str, payload: bytes) -> Decoded | None:
        """``decode``, or None after counting and logging a refused message."""
        try:
            return decode(topic, payload)
        except ProtocolError as e:
            self.refuse(e.reason, topic, str(e))
            return None

    def refuse(self, reason: str, topic: str, detail: str, quiet: bool = False) -> None:
        """Count and log one refused message (receivers' own checks use this too); ``quiet``
        counts without logging (a flood already logged once)."""
        self.by_reason[reason] += 1
        self.last_reason = reason
        if not quiet:
            log.warning("message refused topic=%s reason=%s detail=%s", topic[:120], reason, detail)
