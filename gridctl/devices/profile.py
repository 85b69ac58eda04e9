"""Device profiles: one YAML file per device family mapping Modbus registers to gridctl roles.

A register's value in its role's unit is ``decoded raw x scale`` (x 10^sf when it names a
scale-factor register); a signed power the device reports in generator convention
(``sign: generator``, positive = producing / discharging) is negated into the load convention.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gridctl.core import GridctlError, StrictModel, read_yaml, validated
from gridctl.devices.codec import MAX_READ_REGISTERS, REGISTER_COUNT, RegType
from gridctl.devices.roles import ROLES


class ProfileError(GridctlError):
    """A device profile is missing or invalid."""


class Transport(StrictModel):
    """How to reach the device: Modbus TCP or RTU, with its defaults."""

    type: Literal["tcp", "rtu"]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit: Annotated[int, Field(ge=0, le=255)] = 1
    baudrate: Annotated[int, Field(gt=0)] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None


class Register(StrictModel):
    """One register (or group of registers) holding one role."""

    role: str
    function: Literal["holding", "input"]
    address: Annotated[int, Field(ge=0, le=65535)]
    type: RegType
    size: Annotated[int, Field(ge=1, le=64)] | None = None
    """Registers a string occupies; other types have a fixed size."""
    scale: float = 1.0
    """Multiplier from the decoded raw value to the role's unit (e.g. 0.1 for 0.1 A steps)."""
    scale_register: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Address of a SunSpec-style scale factor (s16 power of ten) in the same register table."""
    unit: str
    """The unit the vendor's document gives for the register (e.g. kWh, 0.1 A is unit A)."""
    sign: Literal["load", "generator"] = "load"
    access: Literal["r", "rw", "w"] = "r"
    min: float | None = None
    max: float | None = None
    map: dict[int, str] | None = None
    word_order: Literal["big", "little"] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    """For one digital channel packed into a 16-bit register (an I/O coupler's process image):
    its bit, 0 = least significant; the role's value is that bit, 0 or 1."""

    @property
    def count(self) -> int:
        """Number of 16-bit registers this entry spans."""
        return self.size if self.size is not None else REGISTER_COUNT[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        role = ROLES.get(self.role)
        if role is None:
            raise ValueError(f"unknown role {self.role!r}")
        if self.unit not in role.device_units:
            allowed = ", ".join(role.device_units)
            raise ValueError(f"role {self.role} takes units {allowed}, not {self.unit!r}")
        if self.type == RegType.STRING and self.size is None:
            raise ValueError("a string register needs a size")
        if self.type != RegType.STRING and self.size is not None:
            raise ValueError(f"type {self.type} has a fixed size; drop 'size'")
        if self.sign == "generator" and not role.signed_power:
            raise ValueError(f"sign applies to signed powers only, not {self.role}")
        if self.map is not None and self.type not in (RegType.ENUM16, RegType.U16, RegType.ENUM32):
            raise ValueError("a map needs an enum or u16 register")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.bit is not None and (self.type != RegType.U16 or self.access != "r"):
            raise ValueError("a bit is read from a read-only u16 register")
        return self


DeviceKind = Literal["pv_inverter", "battery", "hybrid_inverter", "ev_charger", "meter", "io"]
"""What a device is; ``io``: a digital I/O coupler (e.g. the relay contact of a grid
operator's §14a control box wired to one of its inputs)."""


class Profile(StrictModel):
    """A device family's register map."""

    vendor: str
    model: str
    kind: DeviceKind
    source: Annotated[str, Field(min_length=10)]
    """The public document the register map comes from (title, version, where)."""
    products: list[str] = Field(default_factory=list)
    transport: Transport
    word_order: Literal["big", "little"] = "big"
    na_sentinels: bool = False
    """SunSpec "not implemented" values (0xFFFF, 0x8000, ...) mean unknown; set for SunSpec maps."""
    registers: Annotated[list[Register], Field(min_length=1)]
    max_read_registers: Annotated[int, Field(ge=1, le=MAX_READ_REGISTERS)] = MAX_READ_REGISTERS
    """Most registers the device answers in one read request (its documentation)."""
    notes: str | None = None

    @model_validator(mode="after")
    def _no_clash(self) -> Self:
        seen: set[str] = set()
        used: dict[tuple[str, int], str] = {}
        for r in self.registers:
            if r.role in seen:
                raise ValueError(f"role {r.role} mapped twice")
            seen.add(r.role)
            for a in range(r.address, r.address + r.count):
                other = used.get((r.function, a))
                if other is not None:
                    raise ValueError(f"{r.role} overlaps {other} at {r.function} register {a}")
                used[(r.function, a)] = r.role
        sf_addrs = {(r.function, r.scale_register) for r in self.registers if r.scale_register}
        for fn, addr in sf_addrs:
            if (fn, addr) in used:
                raise ValueError(f"scale register {fn} {addr} overlaps {used[(fn, addr)]}")
        return self

    def register(self, role: str) -> Register:
        """The register holding ``role``; ProfileError if the profile has none."""
        for r in self.registers:
            if r.role == role:
                return r
        raise ProfileError(f"profile {self.vendor} {self.model} has no role {role}")


def _profiles_dir() -> Path:
    return Path(str(resources.files("gridctl.device_profiles")))


def profile_names() -> list[str]:
    """Names (file stems) of every packaged profile, sorted."""
    return sorted(p.stem for p in _profiles_dir().glob("*.yaml"))


def parse_profile(path: Path) -> Profile:
    """Read and validate one profile file; ProfileError names the file and the bad field."""
    raw = read_yaml(path, ProfileError, "profile ")
    return validated(Profile, raw, ProfileError, path.name)


@cache
def load_profile(name: str) -> Profile:
    """A packaged profile by name, or a profile file by path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = _profiles_dir() / f"{name}.yaml"
        if not path.is_file():
            raise ProfileError(f"no device profile {name!r} (see `gridctl device profiles`)")
    return parse_profile(path)
