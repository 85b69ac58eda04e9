"""The canonical reading payload, the wire message and keys."""

import json

import pytest
from cryptography.exceptions import InvalidSignature

from gridctl.settlement.signing import (
    MeterSigner,
    ReadingError,
    key_from_seed,
    key_id_of,
    parse_reading,
    public_bytes,
    reading_payload,
)


def test_payload_is_byte_exact() -> None:
    got = reading_payload("h07/main", 1_980_000, 3, 12_345, 678)
    want = (
        b"gridctl/reading/v1" + b"\x08" + b"h07/main"
        + (1_980_000).to_bytes(8, "big") + (3).to_bytes(8, "big")
        + (12_345).to_bytes(8, "big") + (678).to_bytes(8, "big")
    )  # fmt: skip
    assert got == want and len(got) == 18 + 1 + 8 + 32


def test_signed_reading_round_trips_through_the_wire_and_verifies() -> None:
    key = key_from_seed(b"meter-1")
    signer = MeterSigner("h01/main", key)
    r = signer.sign(100, 5000, 20)
    assert r.seq == 1 and signer.sign(101, 5100, 20).seq == 2
    back = parse_reading(json.dumps(r.to_message()))
    assert back == r and back.digest() == r.digest()
    key.public_key().verify(back.signature, back.payload())
    assert r.key_id == key_id_of(public_bytes(key)) and len(r.key_id) == 16


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"meter": "h 01"}, "meter"),
        ({"e_import_wh": -5}, "e_import_wh"),
        ({"interval": "soon"}, "interval"),
        ({"sig": "zz"}, "sig"),
        ({"colour": "red"}, "colour"),
        ({"key_id": "ABC"}, "key_id"),
    ],
)
def test_bad_message_names_the_field(edit: dict, field: str) -> None:
    msg = MeterSigner("h01/main", key_from_seed(b"k")).sign(1, 1, 1).to_message()
    with pytest.raises(ReadingError, match=field):
        parse_reading({**msg, **edit})


def test_weak_or_malformed_public_keys_are_refused_at_registration(tmp_path) -> None:
    """Small-order keys would let anyone forge readings (OpenSSL accepts s = 0 under the
    identity key); registration refuses them, and verification rejects such forgeries."""
    import pytest

    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.registry import register_meter
    from gridctl.settlement.settle import verify_signatures
    from gridctl.settlement.signing import ReadingError, reading_payload

    identity = bytes([1]) + bytes(31)  # the neutral point: order 1
    order_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    non_canonical = bytes([0xEC]) + bytes([0xFF] * 30) + bytes([0x7F])  # y = p - 1 + 2^255 ...
    with Ledger(tmp_path / "l.sqlite") as ledger:
        for k, key in enumerate((identity, order_8, non_canonical)):
            with pytest.raises(ReadingError, match="not a valid Ed25519 public key"):
                register_meter(ledger, f"h{k}/main", f"h{k}", "main", 17_250.0, key, 0)
    forged = bytes([1]) + bytes(63)  # R = identity, s = 0: "valid" for any message under OpenSSL
    assert verify_signatures([(identity, forged, reading_payload("h0/main", 5, 1, 100, 0))]) == [
        False
    ]


def test_v2_payload_appends_the_voltage_under_its_own_domain() -> None:
    v1 = reading_payload("h07/main", 1_980_000, 3, 12_345, 678)
    got = reading_payload("h07/main", 1_980_000, 3, 12_345, 678, 231_456)
    assert got == b"gridctl/reading/v2" + v1[len(b"gridctl/reading/v1") :] + (231_456).to_bytes(
        4, "big"
    )
    assert reading_payload("h07/main", 1_980_000, 3, 12_345, 678, None) == v1


def test_v2_reading_signs_verifies_and_round_trips_through_the_wire() -> None:
    key = key_from_seed(b"meter-1")
    signer = MeterSigner("h01/main", key)
    r = signer.sign(100, 5000, 20, v_mv=229_870)
    msg = r.to_message()
    assert msg["v"] == 2 and msg["v_mv"] == 229_870
    back = parse_reading(json.dumps(msg))
    assert back == r and back.v_mv == 229_870 and back.digest() == r.digest()
    key.public_key().verify(back.signature, back.payload())
    # the same counters without a voltage are another reading (another payload, digest)
    v1 = MeterSigner("h01/main", key).sign(100, 5000, 20)
    assert v1.to_message()["v"] == 1 and "v_mv" not in v1.to_message()
    assert v1.payload() != r.payload() and v1.digest() != r.digest()
    # a voltage stripped from (or added to) a signed reading breaks its signature
    stripped = parse_reading({k: v for k, v in msg.items() if k != "v_mv"} | {"v": 1})
    with pytest.raises(InvalidSignature):
        key.public_key().verify(stripped.signature, stripped.payload())


@pytest.mark.parametrize(
    "v_mv", [float("nan"), 230_000.0, -1, 1_000_001, 2**63, "230000", True, float("inf")]
)
def test_hostile_voltage_is_refused_at_signing_and_nothing_is_used_up(v_mv) -> None:
    signer = MeterSigner("h01/main", key_from_seed(b"k"))
    with pytest.raises(ReadingError, match="v_mv"):
        signer.sign(1, 1, 1, v_mv=v_mv)
    assert signer.seq == 0 and signer.sign(1, 1, 1, v_mv=1_000_000).seq == 1


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"v_mv": 230_000.0}, "v_mv"),
        ({"v_mv": "230000"}, "v_mv"),
        ({"v_mv": -1}, "v_mv"),
        ({"v_mv": 1_000_001}, "v_mv"),
        ({"v_mv": 2**63}, "v_mv"),
        ({"v_mv": True}, "v_mv"),
        ({"v_mv": None}, "v_mv"),
        ({"v": 1}, "v_mv"),
        ({"v": 3}, "v"),
    ],
)
def test_bad_voltage_in_a_message_names_the_field(edit: dict, field: str) -> None:
    msg = MeterSigner("h01/main", key_from_seed(b"k")).sign(1, 1, 1, v_mv=230_000).to_message()
    for raw in ({**msg, **edit}, json.dumps({**msg, **edit})):
        with pytest.raises(ReadingError, match=rf"\b{field}:"):
            parse_reading(raw)


def test_nan_voltage_in_json_is_refused() -> None:
    msg = MeterSigner("h01/main", key_from_seed(b"k")).sign(1, 1, 1, v_mv=230_000).to_message()
    raw = json.dumps(msg).replace("230000", "NaN")
    with pytest.raises(ReadingError, match="v_mv"):
        parse_reading(raw)


def test_version_1_message_with_a_voltage_is_refused() -> None:
    msg = MeterSigner("h01/main", key_from_seed(b"k")).sign(1, 1, 1).to_message()
    with pytest.raises(ReadingError, match=r"v_mv: .*version 1"):
        parse_reading({**msg, "v_mv": 230_000})
