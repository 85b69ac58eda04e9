"""Register codec: Modbus 16-bit registers <-> typed values, SunSpec sentinels, scale factors.

Pure functions, no I/O. Multi-register values are big-endian within each register; the
register (word) order is big (most significant word first, the SunSpec and Modbus default)
or little.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from enum import StrEnum

from gridctl.core import GridctlError


class CodecError(GridctlError):
    """Registers cannot be decoded (wrong count, bad scale factor, value out of range)."""


class RegType(StrEnum):
    """Register types (the SunSpec names' short forms)."""

    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    U64 = "u64"
    S64 = "s64"
    ACC16 = "acc16"
    ACC32 = "acc32"
    ACC64 = "acc64"
    F32 = "f32"
    F64 = "f64"
    STRING = "string"
    ENUM16 = "enum16"
    ENUM32 = "enum32"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    SUNSSF = "sunssf"
    PAD = "pad"


REGISTER_COUNT: dict[RegType, int] = {
    RegType.U16: 1, RegType.S16: 1, RegType.ACC16: 1, RegType.ENUM16: 1, RegType.BITFIELD16: 1,
    RegType.SUNSSF: 1, RegType.PAD: 1, RegType.U32: 2, RegType.S32: 2, RegType.ACC32: 2,
    RegType.ENUM32: 2, RegType.BITFIELD32: 2, RegType.F32: 2, RegType.U64: 4, RegType.S64: 4,
    RegType.ACC64: 4, RegType.F64: 4,
}  # fmt: skip
"""Registers per fixed-size type (strings give their own size)."""

SUNSPEC_TYPES: dict[str, RegType] = {
    "uint16": RegType.U16, "int16": RegType.S16, "uint32": RegType.U32, "int32": RegType.S32,
    "uint64": RegType.U64, "int64": RegType.S64, "acc16": RegType.ACC16, "acc32": RegType.ACC32,
    "acc64": RegType.ACC64, "float32": RegType.F32, "float64": RegType.F64,
    "string": RegType.STRING, "enum16": RegType.ENUM16, "enum32": RegType.ENUM32,
    "bitfield16": RegType.BITFIELD16, "bitfield32": RegType.BITFIELD32,
    "sunssf": RegType.SUNSSF, "pad": RegType.PAD, "count": RegType.U16,
    "ipaddr": RegType.U32, "ipv6addr": RegType.STRING, "eui48": RegType.U64,
}  # fmt: skip
"""SunSpec model-definition type names -> codec types."""

_SIGNED = {RegType.S16, RegType.S32, RegType.S64, RegType.SUNSSF}
_ACC = {RegType.ACC16, RegType.ACC32, RegType.ACC64}

# SunSpec "not implemented" values, as unsigned integers of the type's width
_SENTINEL: dict[RegType, int] = {
    RegType.U16: 0xFFFF, RegType.S16: 0x8000, RegType.SUNSSF: 0x8000, RegType.ENUM16: 0xFFFF,
    RegType.BITFIELD16: 0xFFFF, RegType.U32: 0xFFFFFFFF, RegType.S32: 0x80000000,
    RegType.ENUM32: 0xFFFFFFFF, RegType.BITFIELD32: 0xFFFFFFFF,
    RegType.U64: 0xFFFFFFFFFFFFFFFF, RegType.S64: 0x8000000000000000,
    RegType.ACC16: 0, RegType.ACC32: 0, RegType.ACC64: 0,
}  # fmt: skip

MAX_READ_REGISTERS = 125
"""Most registers one Modbus read request may carry (the protocol's limit)."""

MAX_SCALE_EXPONENT = 10
"""Scale factors are powers of ten within ±10; anything else is a decoding fault."""


def _words(regs: Sequence[int], word_order: str) -> list[int]:
    words = [int(r) for r in regs]
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise CodecError(f"register values must be 0..65535, got {words}")
    return words[::-1] if word_order == "little" else words


def _as_uint(regs: Sequence[int], word_order: str) -> int:
    value = 0
    for w in _words(regs, word_order):
        value = (value << 16) | w
    return value


def decode(
    regs: Sequence[int], rtype: RegType, word_order: str = "big", sunspec: bool = True
) -> int | float | str | None:
    """Decode registers into a raw (unscaled) value.

    regs: register contents (0..65535), exactly as many as the type needs.
    sunspec: treat SunSpec "not implemented" values as unknown (None); float NaN is always None.
    Returns an int, float or str, or None where the value is not available.
    """
    rtype = RegType(rtype)
    expect = REGISTER_COUNT.get(rtype)
    if expect is not None and len(regs) != expect:
        raise CodecError(f"{rtype} needs {expect} registers, got {len(regs)}")
    if rtype == RegType.STRING:
        raw = b"".join(w.to_bytes(2, "big") for w in _words(regs, "big"))
        if sunspec and not any(raw):
            return None
        return raw.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    u = _as_uint(regs, word_order)
    if rtype in (RegType.F32, RegType.F64):
        fmt, n_bytes = (">f", 4) if rtype == RegType.F32 else (">d", 8)
        f = struct.unpack(fmt, u.to_bytes(n_bytes, "big"))[0]
        return None if math.isnan(f) else f
    if rtype == RegType.PAD:
        return None
    if sunspec and _SENTINEL.get(rtype) == u:
        return None
    if rtype in _SIGNED:
        bits = 16 * len(regs)
        return u - (1 << bits) if u >> (bits - 1) else u
    return u


def encode(
    value: int | float | str | None,
    rtype: RegType,
    size: int | None = None,
    word_order: str = "big",
) -> list[int]:
    """Encode a raw value into registers; None encodes the SunSpec "not implemented" value.

    size: registers for a string (padded with NUL). Raises CodecError if the value does not fit.
    """
    rtype = RegType(rtype)
    n = REGISTER_COUNT.get(rtype) or size
    if n is None:
        raise CodecError("a string needs a size")
    if rtype == RegType.STRING:
        data = ("" if value is None else str(value)).encode()
        if len(data) > 2 * n:
            raise CodecError(f"string {value!r} longer than {n} registers")
        data = data.ljust(2 * n, b"\x00")
        return [int.from_bytes(data[2 * k : 2 * k + 2], "big") for k in range(n)]
    if rtype in (RegType.F32, RegType.F64):
        fmt = ">f" if rtype == RegType.F32 else ">d"
        u = int.from_bytes(struct.pack(fmt, math.nan if value is None else float(value)), "big")
    elif value is None or rtype == RegType.PAD:
        u = _SENTINEL.get(rtype, 0x8000 if rtype == RegType.PAD else 0)
    else:
        bits = 16 * n
        v = int(value)
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if rtype in _SIGNED
            else (0, (1 << bits) - 1)
        )
        if rtype in _ACC:
            v %= 1 << bits  # accumulators wrap
        elif not lo <= v <= hi:
            raise CodecError(f"{value} does not fit {rtype}")
        u = v & ((1 << bits) - 1)
    words = [(u >> (16 * (n - 1 - k))) & 0xFFFF for k in range(n)]
    return words[::-1] if word_order == "little" else words


def scale(raw: int | float | None, sf: int | None = None, factor: float = 1.0) -> float | None:
    """Apply a SunSpec scale factor (power of ten) and a fixed factor to a raw value.

    raw: decoded value or None. sf: exponent (None = 0); outside ±10 raises CodecError.
    Returns ``raw x 10^sf x factor``, or None if raw is unknown.
    """
    if raw is None:
        return None
    if sf is not None and not -MAX_SCALE_EXPONENT <= sf <= MAX_SCALE_EXPONENT:
        raise CodecError(f"scale factor {sf} outside ±{MAX_SCALE_EXPONENT}")
    exp = sf or 0
    value = raw * factor * (10.0**exp) if exp < 0 else raw * factor * (10**exp)
    return float(value)


def accumulator_delta(previous: int, current: int, rtype: RegType) -> int:
    """Increase of an accumulator between two reads, across a wrap of its width.

    previous, current: raw accumulator values. Returns the non-negative difference.
    """
    bits = 16 * REGISTER_COUNT[RegType(rtype)]
    return (current - previous) % (1 << bits)
