"""`gridctl coordinator keys rotate|revoke`: signed key events in the ledger, readings under a
rotated or revoked key refused from its interval on; run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gridctl.controller.keys import generate_key_file, load_key_file
from gridctl.coordinator.config import coordinator_key, enrol, load_coordinator_config
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.roots import key_event_payload
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.signing import MeterSigner, key_id_of, public_bytes
from gridctl.settlement.verify import verify_signatures

ROOT = Path(__file__).resolve().parents[2]
T0 = 2_100_000


def gridctl(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridctl", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def test_rotate_and_revoke_as_processes(tmp_path: Path) -> None:
    old = generate_key_file(tmp_path / "h07.key")
    new = generate_key_file(tmp_path / "h07-new.key")
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        "community: oak\nbroker: {password_file: s}\nledger: ledger.sqlite\ninbox: i.sqlite\n"
        "tariff: {import_per_kwh: 0.3, feed_in_per_kwh: 0.1, community_per_kwh: 0.2}\n"
        f"households: [{{id: h07, public_key: {old.hex()}}}, {{id: h08, public_key: "
        f"{generate_key_file(tmp_path / 'h08.key').hex()}}}]\n"
    )
    assert gridctl("coordinator", "keygen", cfg, cwd=tmp_path).returncode == 0
    c = load_coordinator_config(cfg)
    enrol(c, T0)
    signer = MeterSigner("h07/main", load_key_file(tmp_path / "h07.key"))
    with Ledger(c.ledger, coordinator_key(c)) as led:  # the first interval settles
        Settler(led, SettlementConfig(0.2, 1.0)).settle(T0, [signer.sign(T0, 100, 0)])

    late = gridctl("coordinator", "keys", "rotate", cfg, "h07", "--public-key", new.hex(),
                   "--at", str(T0), cwd=tmp_path)  # fmt: skip
    assert late.returncode == 2 and "settled already" in late.stderr, late.stderr
    rot = gridctl("coordinator", "keys", "rotate", cfg, "h07", "--public-key", new.hex(),
                  "--at", str(T0 + 1), cwd=tmp_path)  # fmt: skip
    assert rot.returncode == 0, rot.stderr
    assert f"key {key_id_of(new)} signs from interval {T0 + 1}" in " ".join(rot.stdout.split())
    rev = gridctl("coordinator", "keys", "revoke", cfg, "h07", "--at", str(T0 + 2), cwd=tmp_path)
    assert rev.returncode == 0 and key_id_of(new) in rev.stdout, rev.stderr
    again = gridctl("coordinator", "keys", "revoke", cfg, "h07", cwd=tmp_path)
    assert again.returncode == 0 and "no current key" in again.stdout
    for argv, needle in (
        (("rotate", cfg, "h99", "--public-key", new.hex()), "not enrolled"),
        (("rotate", cfg, "h08", "--public-key", "xyz"), "--public-key"),
        (("rotate", cfg, "h08", "--public-key", "00" * 32), "not a valid Ed25519"),
        (("rotate", cfg, "h08", "--public-key", new.hex()), "already registered"),
        (("revoke", cfg, "h08", "--at", "yesterday"), "--at"),
    ):
        bad = gridctl("coordinator", "keys", *argv, cwd=tmp_path)
        assert bad.returncode == 2 and needle in bad.stderr, (argv, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr

    # the key events are signed by the coordinator key and covered by the next root
    pub = public_bytes(coordinator_key(c))
    with Ledger(c.ledger, coordinator_key(c)) as led:
        events = led.db.execute("SELECT key_id, event, at_interval, sig FROM key_events").fetchall()
        assert {(e[1], e[2]) for e in events} == {("rotated", T0 + 1), ("revoked", T0 + 2)}
        assert verify_signatures(
            [(pub, bytes.fromhex(s), key_event_payload(k, e, at)) for k, e, at, s in events]
        ) == [True, True]
        settler = Settler(led, SettlementConfig(0.2, 1.0))
        renewed = MeterSigner("h07/main", load_key_file(tmp_path / "h07-new.key"), signer.seq)
        one = settler.settle(T0 + 1, [signer.sign(T0 + 1, 110, 0), renewed.sign(T0 + 1, 110, 0)])
        assert one.rejected == [("h07/main", "superseded_key")] and one.status[0] == "verified"
        two = settler.settle(T0 + 2, [renewed.sign(T0 + 2, 120, 0)])
        assert two.rejected == [("h07/main", "revoked_key")] and two.status[0] == "missing"
    assert verify_ledger(c.ledger).ok
