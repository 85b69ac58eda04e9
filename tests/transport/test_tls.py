"""TLS from `gridctl broker config`: the generated CA and server certificate, key files only the
broker's user can read, and a controller and the coordinator settling an interval over a real
Mosquitto TLS listener that requires client certificates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import sqlite3
import ssl
import stat
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import load_key_file
from gridctl.controller.loop import Controller
from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S
from gridctl.devices.virtual import free_tcp_port
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.settle import SettlementConfig
from gridctl.transport.launcher import running_broker
from gridctl.transport.session import BrokerConfig, BrokerSettings, tls_context
from gridctl.transport.tls import issue, load_pair, pem
from tests.conftest import Broker, require_tool, stop_tasks, until
from tests.controller.test_controller import fast_clock, house
from tests.controller.test_resilience import enrol
from tests.deployment import reachable_dir
from tests.keys import COORDINATOR_KEY

runner = CliRunner()


def _config(community: Path, out: Path, *args: str) -> str:
    """`gridctl broker config` for the community file; its output (AssertionError unless 0)."""
    res = runner.invoke(app, ["broker", "config", str(community), "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return res.output


def _owner_mode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


def _broker_uid() -> int:
    """Who Mosquitto reads its files as: started by root, its own system user."""
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam("mosquitto").pw_uid
    return os.geteuid()


def test_generated_files_are_private_kept_and_renewed_for_another_name(tmp_path: Path) -> None:
    community = tmp_path / "c.yaml"
    community.write_text("community: oak\nhouseholds: [h1]\n")
    out, tls = tmp_path / "b", tmp_path / "b" / "tls"
    assert str(tls / "ca.pem") in _config(community, out, "--tls-generate", "127.0.0.1")
    me = os.geteuid()
    assert _owner_mode(tls / "ca.key") == (me, 0o600)  # the CA's key is never the broker's
    assert _owner_mode(tls / "server.key") == (_broker_uid(), 0o600)
    assert _owner_mode(tls / "ca.pem")[1] == _owner_mode(tls / "server.pem")[1] == 0o644
    conf = (out / "mosquitto.conf").read_text()
    assert f"certfile {tls / 'server.pem'}\nkeyfile {tls / 'server.key'}" in conf
    ca, server = (tls / "ca.pem").read_bytes(), (tls / "server.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(server)
    assert cert.issuer == x509.load_pem_x509_certificate(ca).subject

    _config(community, out, "--tls-generate", "127.0.0.1")  # again: nothing changes
    assert (tls / "ca.pem").read_bytes() == ca and (tls / "server.pem").read_bytes() == server
    _config(community, out, "--tls-generate", "mqtt.oak.example")  # another name: same CA
    renewed = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
    assert (tls / "ca.pem").read_bytes() == ca and renewed.serial_number != cert.serial_number
    names = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt.oak.example"]

    # files of one's own (as from /etc/letsencrypt) are copied where the broker can read them
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    shutil.copy(tls / "server.pem", own / "cert.pem")
    shutil.copy(tls / "server.key", own / "key.pem")
    _config(community, tmp_path / "c", "--tls-cert", str(own / "cert.pem"),
            "--tls-key", str(own / "key.pem"))  # fmt: skip
    key = tmp_path / "c" / "tls" / "server.key"
    assert _owner_mode(key) == (_broker_uid(), 0o600)
    assert key.read_bytes() == (own / "key.pem").read_bytes()


def test_bad_tls_options_and_files_exit_2_in_one_line(tmp_path: Path) -> None:
    community = tmp_path / "c.yaml"
    community.write_text("community: oak\nhouseholds: [h1]\n")
    _config(community, tmp_path / "b", "--tls-generate", "127.0.0.1")
    tls = tmp_path / "b" / "tls"
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\xff not PEM")
    for args, needle in (
        (["--tls-generate", "bad name"], "not a host name"),
        (["--tls-generate", "127.0.0.1", "--tls-cert", str(tls / "server.pem"),
          "--tls-key", str(tls / "server.key")], "not with --tls-cert"),
        (["--tls-ca", str(tls / "ca.pem")], "--tls-ca needs"),
        (["--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "ca.key")], "not the EC key"),
        (["--tls-cert", str(tls / "server.pem"), "--tls-key", str(junk)], "not a PEM"),
        (["--tls-cert", str(junk), "--tls-key", str(tls / "server.key")], "not a PEM"),
    ):  # fmt: skip
        res = runner.invoke(app, ["broker", "config", str(community), "--out",
                                  str(tmp_path / "x"), *args])  # fmt: skip
        assert res.exit_code == 2 and needle in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    with pytest.raises(Exception, match="TLS files"):  # a session's unusable files: one line
        tls_context(BrokerSettings(tls=True, cafile=junk))


def test_broker_config_names_a_folder_the_brokers_user_cannot_enter(tmp_path: Path) -> None:
    community = tmp_path / "c.yaml"
    community.write_text("community: oak\nhouseholds: [h1]\n")
    with reachable_dir() as top:
        shut = top / "shut"
        shut.mkdir(mode=0o700)
        warned = _config(community, shut / "b")
        assert "may not enter" not in _config(community, top / "open")
    # started by root, Mosquitto reads as its own user; otherwise as us, who may enter
    assert (f"may not enter {shut}:" in warned) == (_broker_uid() != os.geteuid()), warned


async def test_a_controller_and_the_coordinator_settle_an_interval_over_tls(
    tmp_path: Path,
) -> None:
    require_tool("mosquitto")
    community = tmp_path / "c.yaml"
    community.write_text("community: oak\nhouseholds: [h01]\n")
    port = free_tcp_port()
    with reachable_dir() as top:
        out, tls = top / "b", top / "b" / "tls"
        args = ["--port", str(port), "--tls-generate", "127.0.0.1"]
        _config(community, out, *args)  # makes the CA; then require client certificates
        _config(community, out, *args, "--tls-ca", str(tls / "ca.pem"))
        creds = json.loads((out / "credentials.json").read_text())["users"]
        ca, ca_key = load_pair(tls / "ca.pem", tls / "ca.key")
        for user in ("h01", "coordinator"):  # each client's certificate, from the same CA
            cert, key = issue(ca, ca_key, user, server=False)
            (tmp_path / f"{user}.pem").write_bytes(pem(cert))
            (tmp_path / f"{user}.key").write_bytes(pem(key))

        def files(user: str) -> dict[str, object]:
            return {"tls": True, "cafile": tls / "ca.pem", "certfile": tmp_path / f"{user}.pem",
                    "keyfile": tmp_path / f"{user}.key"}  # fmt: skip

        broker = Broker("mosquitto", port, "oak", ["h01"], creds, out / "mosquitto.conf")
        with running_broker(broker.conf, port):  # as root: drops to its own user
            for tls_ctx in (None, ssl.create_default_context(cafile=str(tls / "ca.pem"))):
                with pytest.raises(aiomqtt.MqttError):  # plain, or TLS without a certificate
                    async with aiomqtt.Client("127.0.0.1", port, username="h01",
                                              password=creds["h01"], tls_context=tls_ctx,
                                              timeout=3):  # fmt: skip
                        pass
            clock = fast_clock()
            first = int(clock() // INTERVAL_S)
            async with house(broker, tmp_path / "h01", "h01", clock) as home:
                enrol(tmp_path / "ledger.sqlite", {"h01": home}, first)
                config = home.config.model_copy(update={"broker": BrokerConfig(
                    port=port, password=creds["h01"], **files("h01"))})  # type: ignore[arg-type]  # fmt: skip
                ctl = Controller(config, load_key_file(config.key_file), clock)
                coord = Coordinator(
                    "oak", BrokerSettings(port=port, username="coordinator",
                                          password=creds["coordinator"], **files("coordinator")),  # type: ignore[arg-type]
                    tmp_path / "ledger.sqlite", tmp_path / "inbox.sqlite",
                    SettlementConfig(0.20, 1.0), COORDINATOR_KEY, clock=clock, tick_s=0.05,
                    catch_up_s=0.5,
                )  # fmt: skip
                tasks = [asyncio.create_task(x.run()) for x in (coord, ctl)]
                try:
                    await until(lambda: (coord.last_closed or 0) >= first, 30)
                    assert ctl.session.connects == coord.session.connects == 1
                finally:
                    await stop_tasks(*tasks)
    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    rows = con.execute("SELECT status FROM meter_readings WHERE meter = ? AND interval = ?",
                       (main_meter("h01"), first)).fetchall()  # fmt: skip
    con.close()
    assert rows == [("verified",)]
