"""SunSpec: model definitions, decoding and encoding of model blocks, discovery and chain walk.

Model definitions are the official SunSpec JSON files that ship with the ``pysunspec2``
package; nothing here retypes them. Decoding is pure (registers in, values out); the async
scan uses any client with ``read(function, address, count)``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gridctl.devices.codec import (
    MAX_READ_REGISTERS,
    REGISTER_COUNT,
    SUNSPEC_TYPES,
    CodecError,
    RegType,
    decode,
    encode,
    scale,
)

MARKER = [0x5375, 0x6E53]
"""``SunS`` at the base address."""
BASE_ADDRESSES = (40000, 0, 50000)
"""Where SunSpec devices put the marker, most common first."""
END_ID = 0xFFFF
MAX_MODELS = 64
"""Guard against a chain that never ends."""
REGISTER_SPACE = 0x10000
"""Modbus addresses run 0..65535; a model block must end inside them."""
MAX_MODEL_LENGTH = 4096
"""Most registers (L) a model may claim: the largest shipped definition (64411) has 1398."""


@cache
def _model_dir() -> Path:
    import sunspec2

    return Path(sunspec2.__file__).parent / "models" / "json"


@cache
def model_def(model_id: int) -> dict[str, Any] | None:
    """The official definition of a SunSpec model (its top-level group), or None if unknown."""
    path = _model_dir() / f"model_{model_id}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["group"]


def known_model_ids() -> list[int]:
    """Every model id with a shipped definition."""
    return sorted(int(p.stem.split("_")[1]) for p in _model_dir().glob("model_*.json"))


@dataclass(frozen=True)
class Point:
    """One decoded point: ``value`` is scaled (or the enum symbol), None when not implemented."""

    name: str
    value: float | int | str | None
    raw: int | float | str | None
    units: str | None
    offset: int
    """Register offset from the model's ID register."""
    type: RegType
    size: int
    access: str


@dataclass(frozen=True)
class Group:
    """A group of points, with its nested (possibly repeating) groups."""

    name: str
    points: dict[str, Point]
    groups: dict[str, list[Group]] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    """A decoded model block at ``address`` (its ID register) of ``length`` registers (after L)."""

    id: int
    address: int
    length: int
    label: str
    root: Group | None
    """None when gridctl has no definition for the model id."""


def _ptype(p: Mapping[str, Any]) -> RegType:
    try:
        return SUNSPEC_TYPES[p["type"]]
    except KeyError:
        raise CodecError(f"unsupported SunSpec point type {p['type']!r}") from None


def _static_size(g: Mapping[str, Any]) -> int | None:
    """Registers one instance of a group takes, or None if it depends on counts in the data."""
    total = sum(int(p["size"]) for p in g.get("points", []))
    for sg in g.get("groups", []):
        c = sg.get("count", 1)
        inner = _static_size(sg)
        if not isinstance(c, int) or c == 0 or inner is None:
            return None
        total += c * inner
    return total


def _symbol(p: Mapping[str, Any], raw: Any) -> Any:
    if p["type"] in ("enum16", "enum32") and raw is not None:
        for s in p.get("symbols", []):
            if s["value"] == raw:
                return s["name"]
    return raw


def _decode_group(
    g: Mapping[str, Any], regs: list[int], off: int, end: int, scopes: tuple[dict[str, Point], ...]
) -> tuple[Group, int]:
    raw_points: dict[str, tuple[Mapping[str, Any], Any, int]] = {}
    for p in g.get("points", []):
        size = int(p["size"])
        if off + size > end:
            raise CodecError(f"model block too short for point {p['name']}")
        rtype = _ptype(p)
        chunk = regs[off : off + size]
        raw = (
            decode(chunk, rtype)
            if rtype == RegType.STRING or size == REGISTER_COUNT[rtype]
            else None
        )
        raw_points[p["name"]] = (p, raw, off)
        off += size
    # scale factors live in this group or an enclosing one
    sf_scope: dict[str, Any] = {}
    for scope in scopes:
        sf_scope.update({k: v.raw for k, v in scope.items()})
    sf_scope.update({k: v[1] for k, v in raw_points.items()})
    points: dict[str, Point] = {}
    for name, (p, raw, p_off) in raw_points.items():
        value: Any = raw
        sf = p.get("sf")
        if sf is not None and isinstance(raw, int | float):
            exp = sf if isinstance(sf, int) else sf_scope.get(sf)
            value = None if exp is None and isinstance(sf, str) else scale(raw, exp)
        points[name] = Point(
            name=name,
            value=_symbol(p, value),
            raw=raw,
            units=p.get("units"),
            offset=p_off,
            type=_ptype(p),
            size=int(p["size"]),
            access=p.get("access", "R"),
        )
    groups: dict[str, list[Group]] = {}
    inner_scopes = (*scopes, points)
    for sg in g.get("groups", []):
        c = sg.get("count", 1)
        if isinstance(c, str):
            n = sf_scope.get(c)
            repeats = int(n) if isinstance(n, int) else 0
        elif c == 0:  # repeat to the end of the block
            size = _static_size(sg)
            repeats = (end - off) // size if size else 0
        else:
            repeats = int(c)
        items = []
        for _ in range(repeats):
            item, off = _decode_group(sg, regs, off, end, inner_scopes)
            items.append(item)
        groups[sg["name"]] = items
    return Group(name=g["name"], points=points, groups=groups), off


def decode_model(regs: list[int], address: int = 0) -> Model:
    """Decode one model block; ``regs`` holds its ID, L and L more registers."""
    if len(regs) < 2:
        raise CodecError("a model block needs at least ID and L")
    model_id, length = regs[0], regs[1]
    if len(regs) < 2 + length:
        raise CodecError(f"model {model_id}: {len(regs) - 2} registers, L says {length}")
    d = model_def(model_id)
    if d is None:
        return Model(model_id, address, length, f"model {model_id} (no definition)", None)
    root, _ = _decode_group(d, regs, 0, 2 + length, ())
    return Model(model_id, address, length, d.get("label", d["name"]), root)


@cache
def point_layout(model_id: int) -> dict[str, tuple[int, RegType, int]]:
    """Top-level points of a model: name -> (offset from ID, type, size)."""
    d = model_def(model_id)
    if d is None:
        raise CodecError(f"no SunSpec definition for model {model_id}")
    out: dict[str, tuple[int, RegType, int]] = {}
    off = 0
    for p in d.get("points", []):
        out[p["name"]] = (off, _ptype(p), int(p["size"]))
        off += int(p["size"])
    return out


def encode_model(
    model_id: int, values: Mapping[str, Any], repeats: Mapping[str, int] | None = None
) -> list[int]:
    """Registers of a model block (ID, L and body) from raw point values by name.

    values: raw (unscaled) values by point name; points of repeating groups are named
    ``"group[i].point"`` (nested: ``"outer[i].inner[j].point"``); anything missing encodes as
    "not implemented". A group counted by a point repeats as that point's value says.
    repeats: instances of groups that fill the block (count 0), by group name (default 0).
    """
    d = model_def(model_id)
    if d is None:
        raise CodecError(f"no SunSpec definition for model {model_id}")
    repeats = dict(repeats or {})

    def group(g: Mapping[str, Any], prefix: str) -> list[int]:
        out: list[int] = []
        for p in g.get("points", []):
            if p["name"] in ("ID", "L") and not prefix:
                continue
            rtype = _ptype(p)
            size = int(p["size"])
            out += encode(
                values.get(prefix + p["name"]), rtype, size if rtype == RegType.STRING else None
            )
        for sg in g.get("groups", []):
            c = sg.get("count", 1)
            if isinstance(c, str):
                n = int(values.get(prefix + c, values.get(c)) or 0)
            else:
                n = c if c > 0 else repeats.get(sg["name"], 0)
            for i in range(n):
                out += group(sg, f"{prefix}{sg['name']}[{i}].")
        return out

    body = group(d, "")
    return [model_id, len(body), *body]


Reader = Callable[[int, int], Awaitable[list[int]]]
"""``read(address, count)`` of holding registers."""


class _ReadAhead:
    """Reads whole ``MAX_READ_REGISTERS`` windows and serves smaller requests from them.

    A chain of small models then costs a request or two instead of two per model. A device
    that refuses a window (an address past its map) is read exactly instead.
    """

    def __init__(self, read: Reader):
        self.read = read
        self.start = 0
        self.regs: list[int] = []

    async def get(self, address: int, count: int) -> list[int]:
        from gridctl.devices.client import ModbusExceptionError

        out: list[int] = []
        while count > 0:
            if not self.start <= address < self.start + len(self.regs):
                window = min(MAX_READ_REGISTERS, REGISTER_SPACE - address)
                try:
                    self.regs = await self.read(address, window)
                except ModbusExceptionError:
                    self.regs = await self.read(address, min(count, MAX_READ_REGISTERS))
                self.start = address
            k = address - self.start
            chunk = self.regs[k : k + count]
            out += chunk
            address += len(chunk)
            count -= len(chunk)
        return out


async def find_base(read: Reader) -> int | None:
    """Address of the ``SunS`` marker (trying 40000, 0, 50000), or None if the device has none."""
    from gridctl.devices.client import ModbusError

    for base in BASE_ADDRESSES:
        try:
            if await read(base, 2) == MARKER:
                return base
        except ModbusError:
            continue
    return None


async def scan(read: Reader) -> list[Model]:
    """Discover the SunSpec marker and decode every model in the chain, in order."""
    from gridctl.devices.client import ModbusError

    base = await find_base(read)
    if base is None:
        raise ModbusError("no SunSpec marker at 40000, 0 or 50000")
    models: list[Model] = []
    addr = base + 2
    ahead = _ReadAhead(read)
    for _ in range(MAX_MODELS):
        model_id, length = await ahead.get(addr, 2)
        if model_id == END_ID:
            return models
        if length > MAX_MODEL_LENGTH or addr + 2 + length > REGISTER_SPACE:
            raise ModbusError(
                f"SunSpec model {model_id} at {addr} claims {length} registers (at most "
                f"{MAX_MODEL_LENGTH}, ending by register {REGISTER_SPACE - 1}): not a SunSpec map"
            )
        body = await ahead.get(addr + 2, length)
        models.append(decode_model([model_id, length, *body], addr))
        addr += 2 + length
    raise ModbusError(f"SunSpec chain longer than {MAX_MODELS} models")
