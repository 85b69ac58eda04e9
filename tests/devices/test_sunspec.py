import random

import pytest

from gridctl.devices.codec import CodecError
from gridctl.devices.sunspec import (
    decode_model,
    encode_model,
    known_model_ids,
    model_def,
    point_layout,
)


def test_definitions_ship_with_the_package() -> None:
    ids = known_model_ids()
    assert len(ids) > 100
    for required in (1, 101, 103, 113, 120, 123, 124, 201, 202, 203, 204, 704, 802):
        assert required in ids, required


@pytest.mark.parametrize("model_id", known_model_ids())
def test_every_model_decodes_what_was_encoded(model_id: int) -> None:
    """Encode random raw values for the top-level points, decode them back."""
    rng = random.Random(model_id)
    d = model_def(model_id)
    counts = set()
    stack = [d]
    while stack:
        g = stack.pop()
        stack += g.get("groups", [])
        counts |= {sg["count"] for sg in g.get("groups", []) if isinstance(sg.get("count"), str)}
    values = {}
    for name, (_off, rtype, _size) in point_layout(model_id).items():
        if name in ("ID", "L") or rtype.value in ("pad", "string", "f32", "f64"):
            continue
        values[name] = rng.randint(1, 100) if rtype.value != "sunssf" else rng.randint(-3, 3)
    values.update({c: 2 for c in counts})  # repeating groups counted by a point: 2 each
    repeats = {g["name"]: 2 for g in d.get("groups", []) if g.get("count", 1) == 0}
    regs = encode_model(model_id, values, repeats)
    m = decode_model(regs, address=40002)
    assert m.id == model_id and m.length == len(regs) - 2 and m.root is not None
    for name, raw in values.items():
        assert m.root.points[name].raw == raw, name
    for g in d.get("groups", []):
        if g.get("count", 1) != 1:
            assert len(m.root.groups[g["name"]]) == 2, g["name"]


def test_scale_factor_applies_and_missing_points_are_none() -> None:
    regs = encode_model(103, {"W": 1234, "W_SF": 1, "Hz": 5002, "Hz_SF": -2, "St": 4})
    m = decode_model(regs)
    pts = m.root.points
    assert pts["W"].value == 12340.0 and pts["W"].units == "W"
    assert pts["Hz"].value == pytest.approx(50.02)
    assert pts["St"].value == "MPPT"
    assert pts["VA"].value is None  # not implemented
    assert pts["TmpSnk"].value is None


def test_unknown_model_and_short_block() -> None:
    m = decode_model([64999, 2, 7, 7])
    assert m.root is None and m.length == 2
    with pytest.raises(CodecError, match="L says"):
        decode_model([103, 50, 1, 2])
