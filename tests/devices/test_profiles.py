"""Every device profile validates, and served as a virtual device reads back role by role."""

import math
from pathlib import Path

import pytest

from gridctl.devices.client import ModbusClient
from gridctl.devices.codec import decode
from gridctl.devices.profile import ProfileError, load_profile, parse_profile, profile_names
from gridctl.devices.reader import ProfileDevice, decode_roles, plan_reads
from gridctl.devices.roles import ROLES
from gridctl.devices.virtual import serving
from gridctl.devices.virtual_profile import ProfileVirtual

NAMES = profile_names()
KINDS = ("pv_inverter", "hybrid_inverter", "battery", "ev_charger", "meter", "io")


def test_library_is_broad() -> None:
    profiles = [load_profile(n) for n in NAMES]
    assert len(profiles) >= 40
    kinds = {p.kind for p in profiles}
    assert kinds == set(KINDS)
    assert len({p.vendor for p in profiles}) >= 20


@pytest.mark.parametrize("name", NAMES)
async def test_profile_serves_and_reads_back(name: str) -> None:
    profile = load_profile(name)
    device = ProfileVirtual(profile, clock=lambda: 1000.0)  # frozen: values stay put
    async with (
        serving(device) as port,
        ModbusClient("127.0.0.1", port, profile.transport.unit) as client,
    ):
        poll = await ProfileDevice(client, profile).poll()
    assert poll.error is None and not poll.faulted
    readable = [r for r in profile.registers if r.access != "w"]
    assert set(poll.values) == {r.role for r in readable}
    for r in readable:
        got, want = poll.values[r.role], device.values[r.role]
        assert got.unit == ROLES[r.role].unit
        if isinstance(want, str):  # a mapped word whole, a string register cut to its size
            assert got.value == (want if r.map is not None else want[: 2 * r.count]), r.role
            continue
        step = abs(r.scale)  # one raw step of the register, role units
        assert got.value is not None, r.role
        assert math.isclose(got.value, want, rel_tol=1e-5, abs_tol=step / 2 + 1e-9), (
            r.role,
            got,
            want,
        )


GENERATOR_PROFILE = """
vendor: Test
model: PV inverter reporting output positive
kind: pv_inverter
source: "synthetic profile for the sign test"
transport: {type: tcp}
registers:
  - {role: p_w, function: holding, address: 10, type: s32, unit: W, sign: generator}
  - {role: battery_p_w, function: holding, address: 12, type: s16, unit: W, scale: 10, sign: generator}
"""


def test_generator_sign_is_turned_into_load_convention(tmp_path: Path) -> None:
    """A device reporting production as positive must come out negative (load convention);
    checked on a synthetic profile and on every packaged profile that declares the sign."""
    synthetic = tmp_path / "gen.yaml"
    synthetic.write_text(GENERATOR_PROFILE)
    packaged = [load_profile(n) for n in NAMES]
    profiles = [parse_profile(synthetic)]
    profiles += [p for p in packaged if any(r.sign == "generator" for r in p.registers)]
    for profile in profiles:
        device = ProfileVirtual(profile, clock=lambda: 0.0)
        for r in profile.registers:
            if r.sign != "generator" or r.access == "w":
                continue
            device.values[r.role] = -1000.0  # producing / discharging 1 kW
            device._publish()
            regs = device.get(r.function, r.address, r.count)
            raw = decode(regs, r.type, r.word_order or profile.word_order, sunspec=False)
            assert raw * r.scale > 0, f"{r.role}: the device register should read positive"
            table = {(fn, a): v for fn, t in device.tables.items() for a, v in t.items()}
            assert decode_roles(profile, table)[r.role].value == pytest.approx(
                -1000.0, abs=abs(r.scale)
            )


def test_reads_are_merged_into_few_requests() -> None:
    for name in NAMES:
        profile = load_profile(name)
        blocks = plan_reads(profile, profile.max_read_registers)
        assert all(1 <= b.count <= profile.max_read_registers for b in blocks)
        covered = {(b.function, a) for b in blocks for a in range(b.address, b.address + b.count)}
        for r in profile.registers:
            if r.access != "w":
                assert {(r.function, a) for a in range(r.address, r.address + r.count)} <= covered
    sdm = plan_reads(load_profile("eastron-sdm630"))
    assert len(sdm) == 3  # 13 roles in three runs of contiguous registers
    # devices that answer short requests only: the Carlo Gavazzi EM24 (11 registers) would get
    # 12 in one request without its limit, a KEBA (one 32-bit value) six values
    for name, most in (("carlogavazzi-em24", 11), ("keba-kecontact-p30", 2)):
        profile = load_profile(name)
        assert profile.max_read_registers == most
        assert max(b.count for b in plan_reads(profile)) > most
        assert max(b.count for b in plan_reads(profile, most)) <= most


def test_bad_profiles_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    base = (
        "vendor: X\nmodel: Y\nkind: meter\nsource: 'a public document v1'\ntransport: {type: tcp}\n"
    )
    cases = {
        "registers: [{role: p_watts, function: input, address: 0, type: f32, unit: W}]": "unknown role",
        "registers: [{role: p_w, function: input, address: 0, type: f32, unit: kWh}]": "takes units",
        "registers: [{role: p_w, function: input, address: 0, type: f32, unit: W},"
        " {role: f_hz, function: input, address: 1, type: f32, unit: Hz}]": "overlaps",
        "registers: [{role: f_hz, function: input, address: 0, type: f32, unit: Hz, sign: generator}]": "sign",
    }
    for regs, needle in cases.items():
        bad.write_text(base + regs)
        with pytest.raises(ProfileError, match=needle):
            parse_profile(bad)
    with pytest.raises(ProfileError, match="no device profile"):
        load_profile("no-such-device")


async def test_a_digital_input_reads_its_own_bit_of_the_process_image() -> None:
    """The §14a relay on DI 1 of a WAGO coupler: on and off as served, and a neighbouring
    channel (DI 2) that is on does not read as DI 1."""
    profile = load_profile("wago-750-352")
    device = ProfileVirtual(profile, clock=lambda: 1000.0)
    async with (
        serving(device) as port,
        ModbusClient("127.0.0.1", port, profile.transport.unit) as client,
    ):
        reader = ProfileDevice(client, profile)
        seen = []
        for raw in (0b01, 0b00, 0b10, 0b11):
            device.put("input", 0, [raw])
            seen.append((await reader.poll()).values["dim_request"].value)
        device.set_values(dim_request=1)
        seen.append((await reader.poll()).values["dim_request"].value)
    assert seen == [1, 0, 0, 1, 1]
    bad = profile.registers[0].model_dump() | {"type": "u32"}
    with pytest.raises(ValueError, match="read-only u16"):
        type(profile.registers[0]).model_validate(bad)
