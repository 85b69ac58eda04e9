"""Households keep the interval roots the coordinator publishes (signed, chained), refuse any
other, and hand them to an auditor: on a real broker with real controllers and coordinator."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.roots import RootStore
from gridctl.protocol import coordinator_topic, encode
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.roots import ZERO, RootMessage, RootsFile, root_payload
from gridctl.settlement.signing import key_from_seed, key_id_of, public_bytes
from gridctl.transport.launcher import running_broker
from gridctl.transport.session import BrokerSettings, Session
from tests.conftest import stop_tasks, until
from tests.controller.coordinator_child import coordinator
from tests.controller.test_resilience import community
from tests.keys import COORDINATOR_KEY, COORDINATOR_PUBLIC_HEX

runner = CliRunner()
PUBLIC = public_bytes(COORDINATOR_KEY)


def _root(interval: int, prev: str, key=COORDINATOR_KEY, root: str = "ab" * 32) -> RootMessage:  # type: ignore[no-untyped-def]
    """A root as a coordinator holding ``key`` signs it."""
    payload = root_payload(interval, 3, root, "cd" * 32, "ef" * 32, prev)
    return RootMessage(interval=interval, size=3, root=root, head="cd" * 32, records="ef" * 32,
                       prev=prev, key_id=key_id_of(public_bytes(key)),
                       sig=key.sign(payload).hex())  # fmt: skip


def test_a_root_is_kept_only_when_signed_by_the_enrolled_key_and_chained() -> None:
    store = RootStore(sqlite3.connect(":memory:"), PUBLIC)
    a = _root(100, ZERO)
    b = _root(101, a.chain())
    assert store.add(a) is None and store.add(b) is None and store.add(b) is None  # dup: same
    stranger = key_from_seed(b"not the coordinator")
    forged = _root(102, b.chain(), key=stranger)
    relabelled = forged.model_copy(update={"key_id": a.key_id})  # claims the right key id
    tampered = _root(102, b.chain()).model_copy(update={"root": "00" * 32})
    assert store.add(forged) == store.add(relabelled) == store.add(tampered) == "bad_signature"
    assert store.add(_root(102, a.chain())) == "broken_chain"  # skips 101
    assert store.add(_root(101, a.chain(), root="11" * 32)) == "conflicting_root"
    assert store.add(_root(99, "22" * 32)) == "broken_chain"  # does not lead to 100
    assert store.refused == {"bad_signature": 3, "broken_chain": 2, "conflicting_root": 1}
    assert [r.interval for r in store.roots()] == [100, 101]
    assert store.roots()[1] == b
    unkeyed = RootStore(sqlite3.connect(":memory:"), None)
    assert unkeyed.add(a) == "no_coordinator_key" and unkeyed.roots() == []


async def test_controllers_keep_every_root_and_an_auditor_checks_the_ledger_with_them(
    tmp_path: Path,
) -> None:
    async with community(tmp_path) as c:
        with running_broker(c.broker.conf, c.broker.port):
            coord = coordinator(c.args)
            tasks = [asyncio.create_task(x.run()) for x in (coord, *c.controllers.values())]
            try:
                await until(lambda: (coord.last_closed or 0) >= c.first + 2, 30)
                last = coord.last_closed
                assert last is not None
                await until(
                    lambda: all(
                        len(ctl.roots.roots()) >= last - c.first + 1
                        for ctl in c.controllers.values()
                    ),
                    10,
                )
                await stop_tasks(tasks[0])  # the coordinator goes; someone posts as it
                forged = _root(last + 1, ZERO, key=key_from_seed(b"an impostor"))
                as_coord = BrokerSettings(port=c.broker.port, username="coordinator",
                                          password=c.broker.creds["coordinator"])  # fmt: skip
                impostor = Session(as_coord, "coordinator", [], _ignore)
                task = asyncio.create_task(impostor.run())
                await until(lambda: impostor.connected.is_set(), 10)
                topic = coordinator_topic("oak", "root")
                assert await impostor.publish(topic, encode(forged), 1, True)
                await until(
                    lambda: all(ctl.roots.refused["bad_signature"] == 1
                                for ctl in c.controllers.values()), 10,
                )  # fmt: skip
                await stop_tasks(task)
                kept = {h: ctl.roots.roots() for h, ctl in c.controllers.items()}
            finally:
                await stop_tasks(*tasks)
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            published = [ledger.signed_root(iv) for iv in range(c.first, last + 1)]
        for h, roots in kept.items():
            assert roots[: len(published)] == published, h
            assert forged not in roots
        # the household hands its roots over; the ledger reproduces them
        cfg = tmp_path / "h01.yaml"
        h01 = c.houses["h01"].config
        cfg.write_text(json.dumps(json.loads(h01.model_dump_json())))
        out = tmp_path / "h01-roots.json"
        res = runner.invoke(app, ["controller", "roots", str(cfg), "--out", str(out)])
        assert res.exit_code == 0, res.output
        doc = RootsFile.model_validate_json(out.read_text())
        assert doc.household == "h01" and doc.coordinator_key == COORDINATOR_PUBLIC_HEX
        assert doc.roots[: len(published)] == published
        ok = runner.invoke(app, ["ledger", "verify", str(tmp_path / "ledger.sqlite"),
                                 "--roots", str(out)])  # fmt: skip
        assert ok.exit_code == 0 and f"{len(doc.roots)} published roots matched" in ok.output


async def _ignore(topic: str, payload: bytes) -> None:
    """The impostor subscribes to nothing."""
