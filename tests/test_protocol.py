"""Protocol v1: topics, round trips, and refusal (never a crash) of bad or hostile messages."""

import json
import logging
import random
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.core import GridctlError
from gridctl.protocol import (
    MAX_COMMUNITY_W,
    MAX_EPOCH_S,
    MAX_IN_FORCE,
    MAX_PAYLOAD_BYTES,
    REASONS,
    CommunityPlanMessage,
    FeederMessage,
    InForce,
    PlanMessage,
    PlanStep,
    PriceMessage,
    ProtocolError,
    RejectCounter,
    RootMessage,
    Telemetry,
    check_name,
    coordinator_topic,
    decode,
    encode,
    household_topic,
    parse_topic,
)
from gridctl.settlement.aggregates import (
    CommunityFigures,
    Figure,
    OpenDataMessage,
    aggregate_row,
)
from gridctl.settlement.signing import MeterSigner, key_from_seed

C = "oak"
NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def _reading(meter: str = "h01/main", interval: int = 1000, v_mv: int | None = None) -> bytes:
    signer = MeterSigner(meter, key_from_seed(b"test"))
    return json.dumps(signer.sign(interval, 1200, 300, v_mv).to_message()).encode()


def _plan(household: str = "h01") -> PlanMessage:
    steps = [
        PlanStep(interval=1000 + k, battery_w=-500.0, ev_w=0.0, export_max_w=4000.0)
        for k in range(96)
    ]
    return PlanMessage(household=household, issued=999, steps=steps)


_AGGREGATES = aggregate_row(
    1000, 5, 14, (120, 0), (3400, 2500, 2500), 14, [229_100, 236_400],
    CommunityFigures(demand_wh=Figure(3600, 14), pv_wh=Figure(900, 3)),
)  # fmt: skip

VALID = {
    household_topic(C, "h01", "telemetry"): encode(
        Telemetry(household="h01", t=NOW, mode="plan", grid_p_w=-2500.0, pv_p_w=-4000.0, soc=0.5)
    ),
    household_topic(C, "h01", "reading"): _reading(),
    household_topic(C, "h01", "plan"): encode(_plan()),
    household_topic(C, "h01", "status"): b"offline",
    coordinator_topic(C, "prices"): encode(
        PriceMessage(
            interval=1000, import_per_kwh=0.32, feed_in_per_kwh=0.08, community_per_kwh=0.2
        )
    ),
    coordinator_topic(C, "root"): encode(
        RootMessage(
            interval=1000,
            size=3,
            root="ab" * 32,
            head="cd" * 32,
            records="ef" * 32,
            prev="01" * 32,
            key_id="23" * 8,
            sig="45" * 64,
        )
    ),
    coordinator_topic(C, "status"): b"online",
    coordinator_topic(C, "opendata"): encode(OpenDataMessage.of(_AGGREGATES)),
    coordinator_topic(C, "plan"): encode(
        CommunityPlanMessage(
            interval=1000, households=14, k=5, load_w=5000, pv_w=-9000, trafo_w=-2000,
            battery_w=2000, ev_w=0, shared_w=4000, curtail_w=0, feeder_export_max_w=8000,
            in_force=[InForce(kind="envelope", source="config", export_max_w=8000,
                              start_s=900_000, end_s=901_800)],
        )
    ),
    coordinator_topic(C, "feeder"): encode(
        FeederMessage(interval=1000, topology="0123456789abcdef", v_upu=[1_020_000, None],
                      loading_ppm=[412_000])
    ),
}  # fmt: skip


def test_every_valid_message_round_trips() -> None:
    for topic, payload in VALID.items():
        got = decode(topic, payload)
        assert got.community == C
        assert got.kind == topic.rsplit("/", 1)[1]
        if isinstance(got.message, str):
            assert got.message.encode() == payload
        elif got.kind != "reading":
            assert encode(got.message) == payload  # type: ignore[arg-type]
    plan = decode(
        household_topic(C, "h01", "plan"), VALID[household_topic(C, "h01", "plan")]
    ).message
    assert isinstance(plan, PlanMessage)
    assert plan.step(1000) == plan.steps[0] and plan.step(1095) == plan.steps[-1]
    assert plan.step(999) is None and plan.step(1096) is None
    assert len(VALID[household_topic(C, "h01", "plan")]) < MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (household_topic(C, "h01", "plan"), b"x" * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        ("gridctl/v2/oak/h01/plan", b"{}", "bad_topic"),
        ("gridctl/v1/oak/h01/plan/extra", b"{}", "bad_topic"),
        ("gridctl/v1/oak/h01/secrets", b"{}", "bad_topic"),
        ("gridctl/v1/oak/coordinator/telemetry", b"{}", "bad_topic"),
        ("gridctl/v1/o+k/h01/plan", b"{}", "bad_topic"),
        (household_topic(C, "h01", "plan"), b"\xff\xfe", "not_json"),
        (household_topic(C, "h01", "plan"), b"[1, 2]", "not_json"),
        (household_topic(C, "h01", "plan"), b'{"household": "h01"}', "bad_version"),
        (household_topic(C, "h01", "plan"), b'{"v": 2, "household": "h01"}', "bad_version"),
        (
            household_topic(C, "h01", "plan"),
            b'{"v": 1, "household": "h01", "issued": 1, "steps": []}',
            "bad_field",
        ),
        (household_topic(C, "h01", "status"), b"maybe", "bad_field"),
        (household_topic(C, "h02", "plan"), encode(_plan("h01")), "wrong_household"),
        (household_topic(C, "h02", "reading"), _reading("h01/main"), "wrong_household"),
        (
            household_topic(C, "h01", "reading"),
            _reading().replace(b'"v": 1', b'"v": 3'),
            "bad_version",
        ),
        (
            household_topic(C, "h01", "reading"),
            _reading().replace(b'"v": 1', b'"v": true'),
            "bad_version",
        ),
        (
            household_topic(C, "h01", "reading"),
            _reading(v_mv=230_000).replace(b'"v": 2', b'"v": 1'),
            "bad_field",
        ),
    ],
)
def test_bad_messages_are_refused_with_their_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(topic, payload)
    assert err.value.reason == reason


def test_plan_steps_must_be_consecutive_and_telemetry_signs_checked() -> None:
    steps = [{"interval": 10}, {"interval": 12}]
    with pytest.raises(ProtocolError, match=r"steps\[1\]\.interval"):
        decode(
            household_topic(C, "h01", "plan"),
            json.dumps({"v": 1, "household": "h01", "issued": 9, "steps": steps}).encode(),
        )
    bad = {"v": 1, "household": "h01", "t": NOW.isoformat(), "mode": "plan", "pv_p_w": 3000}
    with pytest.raises(ProtocolError, match="pv_p_w"):
        decode(household_topic(C, "h01", "telemetry"), json.dumps(bad).encode())
    naive = {**bad, "pv_p_w": -3000, "t": "2026-06-21T12:00:00"}
    with pytest.raises(ProtocolError, match="t:"):
        decode(household_topic(C, "h01", "telemetry"), json.dumps(naive).encode())


def test_names() -> None:
    assert check_name("h-07_a") == "h-07_a"
    for bad in ("", "a/b", "a+b", "#", "x" * 33, "coordinator"):
        with pytest.raises(GridctlError):
            check_name(bad)
    assert parse_topic(coordinator_topic(C, "root")) == (C, None, "root")


def _mutations() -> st.SearchStrategy[tuple[str, bytes]]:
    topics = st.sampled_from(sorted(VALID)) | st.text(max_size=60)
    payloads = st.one_of(
        st.binary(max_size=300),
        st.sampled_from(sorted(VALID.values())).flatmap(
            lambda p: st.tuples(st.integers(0, len(p)), st.binary(max_size=8)).map(
                lambda cut: p[: cut[0]] + cut[1] + p[cut[0] + len(cut[1]) :]
            )
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda kids: (
                st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=6)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.binary(min_size=MAX_PAYLOAD_BYTES + 1, max_size=MAX_PAYLOAD_BYTES + 2),
    )
    return st.tuples(topics, payloads)


def fuzz_cases(n: int, seed: int) -> list[tuple[str, bytes]]:
    """n hostile (topic, payload) pairs: valid messages with bytes flipped, cut, spliced or
    fields replaced by random JSON values, random bytes, oversized payloads, foreign topics."""
    rng = random.Random(seed)
    topics = sorted(VALID)
    junk = [None, True, -1, 2**70, 1e308, float("nan"), "", "h02", "x" * 200, [], {}, [1], {"v": 1}]
    out = []
    for _ in range(n):
        topic = rng.choice(topics)
        payload = bytearray(VALID[topic])
        how = rng.randrange(6)
        if how == 0:  # flip bytes
            for _ in range(rng.randint(1, 4)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        elif how == 1:  # truncate
            payload = payload[: rng.randrange(len(payload))]
        elif how == 2 and payload.startswith(b"{"):  # replace or drop one field
            doc = json.loads(payload)
            key = rng.choice(sorted(doc))
            if rng.random() < 0.2:
                del doc[key]
            else:
                doc[key] = rng.choice(junk)
            payload = bytearray(json.dumps(doc).encode())
        elif how == 3:
            payload = bytearray(rng.randbytes(rng.randint(0, 200)))
        elif how == 4:  # the right message on someone else's or an unknown topic
            topic = rng.choice(topics).replace("h01", rng.choice(["h02", "h0#", "", "coordinator"]))
        else:
            payload += rng.randbytes(MAX_PAYLOAD_BYTES + 1 - len(payload) + rng.randrange(3))
        out.append((topic, bytes(payload)))
    return out


def test_ten_thousand_fuzzed_messages_are_refused_and_counted_never_crash() -> None:
    counter = RejectCounter()
    accepted = 0
    logging.getLogger("gridctl.protocol").disabled = True  # 10,000 warnings are not the point here
    try:
        for topic, payload in fuzz_cases(10_000, seed=7):
            before = counter.total
            got = counter.decode(topic, payload)
            if got is None:
                assert counter.total == before + 1  # every refusal is counted
            else:
                accepted += 1
                assert got.kind == topic.rsplit("/", 1)[1]
    finally:
        logging.getLogger("gridctl.protocol").disabled = False
    assert counter.total + accepted == 10_000 and counter.total > 7_000
    assert set(counter.by_reason) == set(REASONS)  # every kind of refusal was exercised


@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_mutations())
def test_arbitrary_messages_raise_protocol_errors_only(case: tuple[str, bytes]) -> None:
    topic, payload = case
    try:
        got = decode(topic, payload)
    except ProtocolError as e:
        assert e.reason in REASONS
    else:
        assert got.kind == topic.rsplit("/", 1)[1]


def test_refusals_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    counter = RejectCounter()
    with caplog.at_level(logging.WARNING, logger="gridctl.protocol"):
        assert counter.decode("gridctl/v1/oak/h01/plan", b"{") is None
    assert counter.by_reason == {"not_json": 1}
    assert "reason=not_json" in caplog.text and "gridctl/v1/oak/h01/plan" in caplog.text


def test_a_reading_with_its_voltage_is_a_version_2_reading() -> None:
    msg = decode(household_topic(C, "h01", "reading"), _reading(v_mv=229_500)).message
    assert msg.v == 2 and msg.v_mv == 229_500  # type: ignore[union-attr]


def test_a_plan_dims_a_household_and_one_that_dims_nobody_is_the_old_format() -> None:
    topic = household_topic(C, "h01", "plan")
    plain = json.loads(encode(_plan()))
    # a plan that dims nobody carries no §14a field: a controller of the previous format
    # (unknown fields refused) takes it as before
    assert all(set(s) == {"interval", "battery_w", "ev_w", "export_max_w", "import_max_w"}
               for s in plain["steps"])  # fmt: skip
    dimmed = PlanMessage(household="h01", issued=999,
                         steps=[PlanStep(interval=1000, ev_w=4200.0, controllable_max_w=0.0)])  # fmt: skip
    back = decode(topic, encode(dimmed)).message
    assert isinstance(back, PlanMessage) and back.steps[0].controllable_max_w == 0.0
    for bad in (-1.0, float("nan"), 1e12):
        raw = {"v": 1, "household": "h01", "issued": 9,
               "steps": [{"interval": 10, "controllable_max_w": bad}]}  # fmt: skip
        with pytest.raises(ProtocolError, match="controllable_max_w"):
            decode(topic, json.dumps(raw).encode())


def test_the_community_plan_is_its_own_broadcast_with_strict_bounds() -> None:
    good = CommunityPlanMessage(interval=7, households=9, k=5, load_w=4000, pv_w=-9000,
                                trafo_w=-5000, battery_w=0, ev_w=0, shared_w=1000, curtail_w=0)  # fmt: skip
    got = decode("gridctl/v1/oak/coordinator/plan", encode(good))
    assert got.household is None and got.message == good
    doc = json.loads(encode(good))
    for bad in ({"trafo_w": float("nan")}, {"trafo_w": float("inf")}, {"pv_w": 5},
                {"load_w": 10**10}, {"trafo_w": 1.5}, {"in_force": [{"kind": "envelope"}]},
                {"households": -1}, {"k": 0}, {"extra": 1}):  # fmt: skip
        with pytest.raises(ProtocolError) as err:
            decode("gridctl/v1/oak/coordinator/plan", json.dumps(doc | bad).encode())
        assert err.value.reason == "bad_field", bad
    with pytest.raises(ProtocolError) as err:  # a household's plan topic still wants its plan
        decode("gridctl/v1/oak/h01/plan", encode(good))
    assert err.value.reason == "bad_field"


def test_the_largest_community_plan_fits_a_message() -> None:
    big = InForce(kind="envelope", source="s" * 64, event_id="e" * 64, households=10**6,
                  import_max_w=MAX_COMMUNITY_W, export_max_w=MAX_COMMUNITY_W,
                  controllable_max_w=MAX_COMMUNITY_W, start_s=MAX_EPOCH_S, end_s=MAX_EPOCH_S)  # fmt: skip
    w = -MAX_COMMUNITY_W
    msg = CommunityPlanMessage(interval=2**40, households=10**6, k=10**6, load_w=0, pv_w=w,
                               trafo_w=w, battery_w=w, ev_w=0, shared_w=0, curtail_w=0,
                               in_force=[big] * MAX_IN_FORCE)  # fmt: skip
    assert len(encode(msg)) <= MAX_PAYLOAD_BYTES
    assert decode("gridctl/v1/oak/coordinator/plan", encode(msg)).message == msg
