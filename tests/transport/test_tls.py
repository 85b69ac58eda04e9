"""A TLS listener from `gridctl broker config`, and a session that trusts only its CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import ipaddress
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gridctl.devices.virtual import free_tcp_port
from gridctl.transport.broker import Community, Tls, write_broker_config
from gridctl.transport.launcher import running_broker
from gridctl.transport.session import BrokerSettings, Session
from tests.conftest import require_tool, stop_tasks


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _ca_and_server(tmp: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridctl test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


async def test_tls_listener_takes_a_trusting_client_and_refuses_plain_mqtt(tmp_path: Path) -> None:
    require_tool("mosquitto")
    ca, cert, key = _ca_and_server(tmp_path)
    port = free_tcp_port()
    creds = write_broker_config(Community(community="oak", households=["h1"]), tmp_path / "b", port,
                                tls=Tls(cert, key), run_as=getpass.getuser())  # fmt: skip
    conf = tmp_path / "b" / "mosquitto.conf"
    assert f"certfile {cert}" in conf.read_text()
    with running_broker(conf, port):
        session = Session(BrokerSettings(port=port, username="h1", password=creds["h1"], tls=True,
                                         cafile=ca), "h1", [], _ignore)  # fmt: skip
        task = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(session.connected.wait(), 10)
            assert await session.publish("gridctl/v1/oak/h1/status", b"online", 1, True)
        finally:
            await stop_tasks(task)
        with pytest.raises(aiomqtt.MqttError):  # plain MQTT on the TLS port gets nowhere
            async with aiomqtt.Client(
                "127.0.0.1", port, username="h1", password=creds["h1"], timeout=3
            ):
                pass


async def _ignore(topic: str, payload: bytes) -> None:
    return None
