"""Reading and writing a device through its profile: request planning, role decoding, faults.

``plan_reads`` merges a profile's registers into the fewest requests; ``decode_roles`` and
``encode_role`` are pure; ``ProfileDevice`` polls and writes over a ``ModbusClient`` and marks
the device faulted after repeated failures (its values are then None, never 0).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gridctl.devices.client import BACKOFF_MAX_S, ModbusClient, ModbusError, backoff_s
from gridctl.devices.codec import (
    MAX_READ_REGISTERS,
    CodecError,
    RegType,
    decode,
    encode,
    scale,
)
from gridctl.devices.profile import Profile, ProfileError, Register
from gridctl.devices.roles import ROLES

log = logging.getLogger(__name__)

FAULT_AFTER = 3
"""Consecutive failed polls after which a device is marked faulted."""

Table = dict[tuple[str, int], int]
"""Register contents by (function, address)."""


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers from ``address`` of the ``function`` table."""

    function: str
    address: int
    count: int


@dataclass(frozen=True)
class RoleValue:
    """A role's value in the role's unit (see ``gridctl.devices.roles``); None when unknown."""

    value: float | int | str | None
    unit: str


def plan_reads(profile: Profile, max_count: int = MAX_READ_REGISTERS) -> list[Block]:
    """The fewest requests (≤ ``max_count`` registers each) covering every readable register.

    Only touching or overlapping ranges merge: a gap could be an address the device refuses.
    """
    spans: set[tuple[str, int, int]] = set()
    for r in profile.registers:
        if r.access != "w":
            spans.add((r.function, r.address, r.address + r.count))
            if r.scale_register is not None:
                spans.add((r.function, r.scale_register, r.scale_register + 1))
    blocks: list[Block] = []
    for fn, start, end in sorted(spans):
        last = blocks[-1] if blocks else None
        if last and last.function == fn and start <= last.address + last.count:
            new_end = max(end, last.address + last.count)
            if new_end - last.address <= max_count:
                blocks[-1] = Block(fn, last.address, new_end - last.address)
                continue
        blocks.append(Block(fn, start, end - start))
    return blocks


def _scale_exponent(profile: Profile, reg: Register, table: Table) -> int | None:
    if reg.scale_register is None:
        return 0
    raw = decode([table[(reg.function, reg.scale_register)]], RegType.SUNSSF, sunspec=True)
    return None if raw is None else int(raw)


def decode_roles(profile: Profile, table: Table) -> dict[str, RoleValue]:
    """Every readable role's value from register contents, load convention, role units."""
    out: dict[str, RoleValue] = {}
    for r in profile.registers:
        if r.access == "w":
            continue
        unit = ROLES[r.role].unit
        regs = [table[(r.function, a)] for a in range(r.address, r.address + r.count)]
        raw = decode(regs, r.type, r.word_order or profile.word_order, sunspec=profile.na_sentinels)
        if r.map is not None:
            out[r.role] = RoleValue(
                None if raw is None else r.map.get(int(raw), f"code {raw}"), unit
            )
            continue
        if isinstance(raw, str) or raw is None:
            out[r.role] = RoleValue(raw, unit)
            continue
        if r.bit is not None:
            out[r.role] = RoleValue((int(raw) >> r.bit) & 1, unit)
            continue
        exp = _scale_exponent(profile, r, table)
        value = None if exp is None else scale(raw, exp, r.scale)
        if value is not None and r.sign == "generator":
            value = -value
        out[r.role] = RoleValue(value, unit)
    return out


def encode_role(
    profile: Profile, role: str, value: float | str, sf: int = 0
) -> tuple[Register, list[int]]:
    """Registers to write ``value`` (role units, load convention) into ``role``.

    sf: the device's current scale factor exponent for registers with ``scale_register``.
    Raises ProfileError for a read-only role or a value outside the profile's min/max.
    """
    r = profile.register(role)
    if r.access == "r":
        raise ProfileError(f"{role} is read-only in {profile.vendor} {profile.model}")
    too_low = r.min is not None and isinstance(value, int | float) and value < r.min
    too_high = r.max is not None and isinstance(value, int | float) and value > r.max
    if too_low or too_high:
        raise ProfileError(f"{role}={value} outside {r.min}..{r.max}")
    return r, encode_value(profile, r, value, sf)


def encode_value(
    profile: Profile, r: Register, value: float | str | None, sf: int = 0
) -> list[int]:
    """Registers holding ``value`` (role units, load convention) in register ``r``."""
    word_order = r.word_order or profile.word_order
    if r.map is not None and isinstance(value, str):
        codes = [k for k, v in r.map.items() if v == value]
        if not codes:
            raise ProfileError(f"{r.role}: {value!r} is not in the register's map")
        return encode(codes[0], r.type, None, word_order)
    if value is None or isinstance(value, str):
        return encode(value, r.type, r.size, word_order)
    if r.bit is not None:  # the channel alone (its neighbours read as 0)
        return encode((1 if value else 0) << r.bit, r.type, None, word_order)
    v = -value if r.sign == "generator" else value
    raw = v / r.scale / (10.0**sf)
    if r.type not in (RegType.F32, RegType.F64):
        raw = round(raw)
    try:
        return encode(raw, r.type, r.size, word_order)
    except CodecError as e:
        raise ProfileError(f"{r.role}={value}: {e}") from None


@dataclass(frozen=True)
class Poll:
    """One poll: role values (all None when the read failed), fault state and the error if any."""

    values: dict[str, RoleValue]
    faulted: bool
    error: str | None


class ProfileDevice:
    """A device read and written through its profile over one client."""

    def __init__(self, client: ModbusClient, profile: Profile, fault_after: int = FAULT_AFTER):
        self.client, self.profile, self.fault_after = client, profile, fault_after
        self.blocks = plan_reads(profile, profile.max_read_registers)
        self.failures = 0
        self._next_try_s = 0.0

    @property
    def faulted(self) -> bool:
        """True after ``fault_after`` consecutive failed polls, until one succeeds."""
        return self.failures >= self.fault_after

    def _unknown(self) -> dict[str, RoleValue]:
        return {
            r.role: RoleValue(None, ROLES[r.role].unit)
            for r in self.profile.registers
            if r.access != "w"
        }

    async def poll(self) -> Poll:
        """Read every role once. On failure every value is None; a faulted device is retried
        with exponential backoff (at most every 60 s) instead of on every poll."""
        now = time.monotonic()
        if self.faulted and now < self._next_try_s:
            return Poll(self._unknown(), True, "faulted; waiting before the next attempt")
        try:
            table: Table = {}
            for b in self.blocks:
                regs = await self.client.read(b.function, b.address, b.count)  # type: ignore[arg-type]
                table.update({(b.function, b.address + k): v for k, v in enumerate(regs)})
            values = decode_roles(self.profile, table)
        except (ModbusError, CodecError) as e:
            self.failures += 1
            if self.faulted:
                wait = min(backoff_s(self.failures - self.fault_after, 1.0), BACKOFF_MAX_S)
                self._next_try_s = now + wait
                log.warning(
                    "device faulted where=%s failures=%d error=%s",
                    self.client.where,
                    self.failures,
                    e,
                )
            return Poll(self._unknown(), self.faulted, str(e))
        self.failures = 0
        return Poll(values, False, None)

    async def write(self, role: str, value: float | str) -> None:
        """Write one role (role units, load convention); the client reads it back."""
        r = self.profile.register(role)
        sf = 0
        if r.scale_register is not None:
            raw = decode(await self.client.read(r.function, r.scale_register, 1), RegType.SUNSSF)  # type: ignore[arg-type]
            if raw is None:
                raise ProfileError(f"{role}: scale factor register not implemented")
            sf = int(raw)
        reg, regs = encode_role(self.profile, role, value, sf)
        if reg.function != "holding":
            raise ProfileError(f"{role} lives in input registers, which cannot be written")
        await self.client.write(reg.address, regs, verify=reg.access == "rw")
