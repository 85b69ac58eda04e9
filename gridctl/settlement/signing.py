"""Signed interval readings: the canonical bytes a meter signs, Ed25519 keys, the wire message.

One reading per meter per interval carries the meter id, the interval index, a sequence number,
the cumulative import / export energy counters in integer Wh and, optionally, the meter's mean
voltage over the interval. The meter signs, with Ed25519, these canonical bytes (big-endian, no
padding)::

    b"gridctl/reading/v1"          18 bytes, domain separation (v2: b"gridctl/reading/v2")
    u8  len(meter) || meter        ASCII, 1..64 bytes of [A-Za-z0-9._/-]
    i64 interval                   core.interval_at(epoch_s) = floor(epoch_s / core.INTERVAL_S)
    u64 seq                        strictly increasing per meter
    u64 e_import_wh, u64 e_export_wh
    u32 v_mv                       v2 only: mean phase-to-neutral voltage over the interval, mV

A reading without a voltage is a v1 reading, byte for byte as before voltages existed; one with
a voltage (0..``V_MV_MAX``) is a v2 reading, and its domain differs so neither can pass for the
other. On the wire, ``"v": 1`` carries no ``v_mv`` and ``"v": 2`` must.

The format has room for u64, but seq and the counters are bounded to 2⁶³ − 1 (``I64_MAX``, what
the ledger's SQLite integers hold): a larger value is refused wherever a reading is made or read.

A key is named by its key id, the first 8 bytes (hex) of sha256 of its 32-byte public key.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from gridctl.core import GridctlError, StrictModel, describe_validation_error

DOMAIN = b"gridctl/reading/v1"
DOMAIN_V2 = b"gridctl/reading/v2"
METER_ID = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
_TAIL = struct.Struct(">qQQQ")
_V_MV = struct.Struct(">I")
I64_MAX = 2**63 - 1
V_MV_MAX = 1_000_000
"""Largest voltage a reading carries, mV (1 kV: far above any low-voltage phase)."""


class ReadingError(GridctlError):
    """A reading message is malformed (it names the field) or a meter / key is misconfigured."""


def check_meter_id(meter: str) -> str:
    """The meter id if it is 1-64 characters of ``A-Z a-z 0-9 . _ / -``; else ReadingError."""
    if not METER_ID.match(meter):
        raise ReadingError(f"meter id {meter!r}: use 1-64 characters of A-Z a-z 0-9 . _ / -")
    return meter


def reading_payload(
    meter: str,
    interval: int,
    seq: int,
    e_import_wh: int,
    e_export_wh: int,
    v_mv: int | None = None,
) -> bytes:
    """Canonical, byte-exact bytes a meter signs for one interval (see the module doc): v1
    without ``v_mv`` (mV), v2 with it."""
    m = meter.encode("ascii")
    body = bytes((len(m),)) + m + _TAIL.pack(interval, seq, e_import_wh, e_export_wh)
    if v_mv is None:
        return DOMAIN + body
    return DOMAIN_V2 + body + _V_MV.pack(v_mv)


def reading_digest(payload: bytes, key_id: str, signature: bytes) -> str:
    """``SignedReading.digest`` from the reading's payload (when the caller has it already)."""
    return hashlib.sha256(payload + key_id.encode() + b"|" + signature).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedReading:
    """One meter's reading at the end of an interval, as signed.

    e_import_wh / e_export_wh: cumulative counters, Wh (≥ 0). seq: per-meter sequence number.
    key_id: the signing key's id (hex). signature: 64 bytes, b"" when unsigned.
    v_mv: mean phase-to-neutral voltage over the interval, mV (None: not measured; a v1 reading).
    """

    meter: str
    interval: int
    seq: int
    e_import_wh: int
    e_export_wh: int
    key_id: str
    signature: bytes
    v_mv: int | None = None

    def payload(self) -> bytes:
        """The canonical bytes the signature covers."""
        return reading_payload(
            self.meter, self.interval, self.seq, self.e_import_wh, self.e_export_wh, self.v_mv
        )

    def digest(self) -> str:
        """sha256 (hex) of payload, key id and signature: equal for exact duplicates only."""
        return reading_digest(self.payload(), self.key_id, self.signature)

    def to_message(self) -> dict[str, object]:
        """The wire form (JSON-ready dict) that ``parse_reading`` reads back."""
        msg: dict[str, object] = {
            "v": 1 if self.v_mv is None else 2,
            "meter": self.meter,
            "interval": self.interval,
            "seq": self.seq,
            "e_import_wh": self.e_import_wh,
            "e_export_wh": self.e_export_wh,
            "key_id": self.key_id,
            "sig": self.signature.hex(),
        }
        if self.v_mv is not None:
            msg["v_mv"] = self.v_mv
        return msg


class ReadingMessage(StrictModel):
    """A signed reading on the wire (MQTT ``…/reading``), validated field by field: version 1
    without ``v_mv``, version 2 with it."""

    v: int = Field(1, ge=1, le=2)
    meter: str = Field(pattern=METER_ID.pattern)
    interval: int = Field(ge=0, le=2**62)
    seq: int = Field(ge=0, le=I64_MAX)
    e_import_wh: int = Field(ge=0, le=I64_MAX)
    e_export_wh: int = Field(ge=0, le=I64_MAX)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    sig: str = Field("", pattern=r"^([0-9a-f]{128})?$")
    v_mv: int | None = Field(None, ge=0, le=V_MV_MAX, strict=True, validate_default=True)

    @field_validator("v_mv")
    @classmethod
    def _as_version_says(cls, v_mv: int | None, info: ValidationInfo) -> int | None:
        version = info.data.get("v")
        if version == 2 and v_mv is None:
            raise ValueError("a version 2 reading must carry v_mv")
        if version == 1 and v_mv is not None:
            raise ValueError("a version 1 reading carries no v_mv (use v 2)")
        return v_mv


def parse_reading(raw: bytes | str | dict[str, object]) -> SignedReading:
    """A SignedReading from its JSON (or dict) wire form; ReadingError naming the bad field."""
    try:
        if isinstance(raw, dict):
            msg = ReadingMessage.model_validate(raw)
        else:
            msg = ReadingMessage.model_validate_json(raw)
    except ValidationError as e:
        raise ReadingError(f"bad reading: {describe_validation_error(e)}") from None
    return from_message(msg)


def from_message(msg: ReadingMessage) -> SignedReading:
    """The SignedReading a validated wire message carries."""
    return SignedReading(
        msg.meter,
        msg.interval,
        msg.seq,
        msg.e_import_wh,
        msg.e_export_wh,
        msg.key_id,
        bytes.fromhex(msg.sig),
        msg.v_mv,
    )


def key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """A private key from 32 seed bytes (deterministic, for simulations and tests)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_key: bytes) -> str:
    """Key id: first 8 bytes of sha256(public key), hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


class MeterSigner:
    """What a controller holds per meter: its key and the next sequence number."""

    def __init__(self, meter: str, key: Ed25519PrivateKey, seq: int = 0):
        self.meter = check_meter_id(meter)
        self.key = key
        self.key_id = key_id_of(public_bytes(key))
        self.seq = seq

    def sign(
        self, interval: int, e_import_wh: int, e_export_wh: int, v_mv: int | None = None
    ) -> SignedReading:
        """Sign the counters at the end of ``interval`` (Wh, 0..I64_MAX) and the interval's mean
        voltage ``v_mv`` (mV, 0..V_MV_MAX; None: not measured) with the next sequence number;
        ReadingError for a value out of its range (nothing is used up)."""
        for name, value in (("e_import_wh", e_import_wh), ("e_export_wh", e_export_wh)):
            if not 0 <= value <= I64_MAX:
                raise ReadingError(f"{self.meter}: {name} {value} outside 0..{I64_MAX}")
        if v_mv is not None and (type(v_mv) is not int or not 0 <= v_mv <= V_MV_MAX):
            raise ReadingError(f"{self.meter}: v_mv {v_mv!r}: not an integer in 0..{V_MV_MAX}")
        if self.seq >= I64_MAX:
            raise ReadingError(f"{self.meter}: sequence number exhausted")
        self.seq += 1
        payload = reading_payload(self.meter, interval, self.seq, e_import_wh, e_export_wh, v_mv)
        return SignedReading(
            self.meter,
            interval,
            self.seq,
            e_import_wh,
            e_export_wh,
            self.key_id,
            self.key.sign(payload),
            v_mv,
        )
