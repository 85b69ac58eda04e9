"""The embedded broker reads the configuration `gridctl broker config` writes, and refuses what
it cannot honour. (Its access rights are tested with Mosquitto's in test_broker_acl.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridctl.transport.broker import BrokerConfigError, Community, Tls, write_broker_config
from gridctl.transport.embedded import read_conf
from gridctl.transport.tls import community_tls

ROOT = Path(__file__).resolve().parents[2]


def test_reads_the_listener_and_files_of_a_generated_config(tmp_path: Path) -> None:
    write_broker_config(Community(community="oak", households=["h1"]), tmp_path, 1999, "",
                        insecure=True)  # fmt: skip
    conf = read_conf(tmp_path / "mosquitto.conf")
    assert (conf.port, conf.bind) == (1999, "")
    assert conf.passwd == tmp_path.resolve() / "passwd" and conf.acl == tmp_path.resolve() / "acl"


def test_refuses_tls_anonymous_and_unknown_options(tmp_path: Path) -> None:
    _, cert, key = community_tls(tmp_path / "tls", "oak", "127.0.0.1")
    write_broker_config(Community(community="oak", households=["h1"]), tmp_path, 1999,
                        tls=Tls(certfile=cert, keyfile=key))  # fmt: skip
    conf = tmp_path / "mosquitto.conf"
    with pytest.raises(BrokerConfigError, match="certfile is not supported"):
        read_conf(conf)
    good = "\n".join(line for line in conf.read_text().splitlines() if "file " not in line[:9])
    for text, needle in (
        (good.replace("allow_anonymous false", "allow_anonymous true"), "allow_anonymous false"),
        (good + "\nbridge_protocol_version mqttv50\n", "bridge_protocol_version is not supported"),
        (good.replace("listener 1999 127.0.0.1", ""), "needs listener"),
    ):
        conf.write_text(text)
        with pytest.raises(BrokerConfigError, match=needle):
            read_conf(conf)


def test_a_missing_password_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write_broker_config(Community(community="oak", households=["h1"]), tmp_path, 1999)
    (tmp_path / "passwd").unlink()
    run = subprocess.run(
        [sys.executable, "-m", "gridctl.transport.embedded", "-c", str(tmp_path / "mosquitto.conf")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "passwd" in run.stderr and "Traceback" not in run.stderr
