"""The canonical reading payload, the wire message and keys."""

import json

import pytest

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
