import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridctl.devices.codec import (
    REGISTER_COUNT,
    CodecError,
    RegType,
    accumulator_delta,
    decode,
    encode,
    scale,
)

INT_RANGES = {
    RegType.U16: (0, 0xFFFE), RegType.S16: (-0x7FFF, 0x7FFF), RegType.U32: (0, 0xFFFFFFFE),
    RegType.S32: (-0x7FFFFFFF, 0x7FFFFFFF), RegType.U64: (0, 2**64 - 2), RegType.S64: (-(2**63) + 1, 2**63 - 1),
    RegType.ACC16: (1, 0xFFFF), RegType.ACC32: (1, 0xFFFFFFFF), RegType.ACC64: (1, 2**64 - 1),
    RegType.ENUM16: (0, 0xFFFE), RegType.BITFIELD16: (0, 0xFFFE), RegType.BITFIELD32: (0, 0xFFFFFFFE),
}  # fmt: skip


@pytest.mark.parametrize("rtype", sorted(INT_RANGES))
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_integer_types_round_trip(rtype: RegType, word_order: str) -> None:
    lo, hi = INT_RANGES[rtype]
    for v in (lo, hi, (lo + hi) // 2):
        regs = encode(v, rtype, word_order=word_order)
        assert len(regs) == REGISTER_COUNT[rtype]
        assert decode(regs, rtype, word_order) == v


def test_word_order_and_known_layouts() -> None:
    assert encode(0x12345678, RegType.U32) == [0x1234, 0x5678]
    assert encode(0x12345678, RegType.U32, word_order="little") == [0x5678, 0x1234]
    assert decode([0x4148, 0x0000], RegType.F32) == 12.5
    assert decode([0x0000, 0x4148], RegType.F32, "little") == 12.5
    assert decode([0xFFFF], RegType.S16, sunspec=False) == -1
    assert decode([0x5375, 0x6E53], RegType.STRING) == "SunS"


@pytest.mark.parametrize(
    ("regs", "rtype"),
    [
        ([0x8000], RegType.S16), ([0xFFFF], RegType.U16), ([0x8000], RegType.SUNSSF),
        ([0xFFFF], RegType.ENUM16), ([0xFFFF], RegType.BITFIELD16), ([0x8000, 0], RegType.S32),
        ([0xFFFF, 0xFFFF], RegType.U32), ([0, 0], RegType.ACC32), ([0], RegType.ACC16),
        ([0, 0, 0, 0], RegType.ACC64), ([0x7FC0, 0], RegType.F32), ([0, 0, 0, 0], RegType.STRING),
        ([0x8000, 0, 0, 0], RegType.S64), ([0xFFFF] * 4, RegType.U64), ([0xFFFF, 0xFFFF], RegType.BITFIELD32),
    ],
)  # fmt: skip
def test_sunspec_sentinels_are_unknown(regs: list[int], rtype: RegType) -> None:
    assert decode(regs, rtype) is None
    assert encode(None, rtype, len(regs) if rtype == RegType.STRING else None) == regs or rtype in (
        RegType.F32, RegType.STRING,
    )  # fmt: skip


def test_float_nan_is_unknown_even_outside_sunspec() -> None:
    assert decode(encode(None, RegType.F32), RegType.F32, sunspec=False) is None
    assert decode(encode(math.nan, RegType.F64), RegType.F64, sunspec=False) is None


def test_scale_factors() -> None:
    assert scale(1234, -2) == pytest.approx(12.34)
    assert scale(5, 3) == 5000.0
    assert scale(7, None, 0.1) == pytest.approx(0.7)
    assert scale(None, 2) is None
    for sf in (11, -11, -32767):
        with pytest.raises(CodecError, match="outside"):
            scale(1, sf)


def test_accumulators_wrap() -> None:
    assert accumulator_delta(0xFFFFFFF0, 0x10, RegType.ACC32) == 0x20
    assert accumulator_delta(100, 250, RegType.ACC16) == 150
    assert decode(encode(2**32 + 5, RegType.ACC32), RegType.ACC32) == 5


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(CodecError, match="needs 2 registers"):
        decode([1], RegType.U32)
    with pytest.raises(CodecError, match=r"0\.\.65535"):
        decode([70000], RegType.U16)
    with pytest.raises(CodecError, match="does not fit"):
        encode(70000, RegType.U16)
    with pytest.raises(CodecError, match="longer"):
        encode("too long a string", RegType.STRING, 2)


@settings(max_examples=10_000, deadline=None)
@given(
    st.sampled_from([t for t in RegType if t != RegType.STRING]),
    st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=5),
    st.sampled_from(["big", "little"]),
)
def test_random_registers_never_crash_the_codec(
    rtype: RegType, regs: list[int], word_order: str
) -> None:
    """10,000 random register responses: a value, None or a CodecError, nothing else."""
    try:
        value = decode(regs, rtype, word_order)
    except CodecError:
        assert len(regs) != REGISTER_COUNT[rtype]
        return
    assert value is None or isinstance(value, int | float)
