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
