"""A community's Mosquitto broker: configuration, password file and per-household ACLs.

``write_broker_config`` writes, into one directory::

    mosquitto.conf     listener, no anonymous access, password and ACL files, persistence,
                       client ids bound to user names, packet / in-flight / queue limits
    passwd             one PBKDF2-SHA512 hash per user (Mosquitto 2 ``$7$`` format)
    acl                the coordinator reads and writes the community; a household writes only its
                       own telemetry / reading / status / vote and reads only its own plan and the
                       community broadcasts (a household's consumption is personal data); the
                       web app (user ``web``) reads the broadcasts and the households' online
                       status, live telemetry and plans (never their readings) and writes only
                       vote topics (it relays members' signed votes)
    credentials.json   user → password, for handing to each controller (mode 0600)

Each client's id is its user name (``use_username_as_clientid``): a household that connects
with a neighbour's or the coordinator's client id gets its own, so it can neither end their
connection, nor leave a will on their status, nor take over or wipe their persistent session and
its queued QoS 1 messages. So each user has one connection at a time (a second one as the same
user ends the first).

Queue sizing. Mosquitto queues QoS 1 messages per receiving client, in flight
(``max_inflight_messages``) and behind that (``max_queued_messages`` / ``max_queued_bytes``), and
drops what arrives for a full queue. Every household's readings go to one client, the
coordinator, so its queue is the one that must never fill: while it is away (its session is
kept a day) it holds ``queued_messages(households)``, a day of every household's readings and
status (two messages per household and interval) plus a burst of ``FLOOD_MESSAGES`` from one
hostile household; ``QUEUED_BYTES_PER_MESSAGE`` bounds the memory this may take (readings are
~0.3 kB; 1,000 households: 202,000 messages, at most 197 MiB). Households receive only their
plan and the coordinator's broadcasts, well within the same limits.

Passwords are drawn at generation time from ``secrets``; running it again keeps the existing
users' passwords and adds new households, so deployed controllers keep working.
"""

from __future__ import annotations

import base64
import binascii
import grp
import hashlib
import hmac
import ipaddress
import json
import os
import pwd
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from paho.mqtt.client import topic_matches_sub
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridctl.core import INTERVAL_S, GridctlError, describe_validation_error, read_yaml
from gridctl.protocol import COORDINATOR, MAX_PAYLOAD_BYTES, NAME, ROOT, check_name
from gridctl.transport.tls import load_pair

WEB = "web"
"""The community web app's broker user (``gridctl web CONFIG``): no household may take the name."""

PBKDF2_ITERATIONS = 101
"""Mosquitto 2's default for ``$7$`` hashes."""
MAX_PACKET_BYTES = 2 * MAX_PAYLOAD_BYTES
"""Broker-side packet limit: a payload somewhat over the protocol's limit still reaches its
receiver, to be refused and counted there; a larger packet ends its sender's connection."""
MAX_INFLIGHT_MESSAGES = 20
"""Unacknowledged QoS 1 messages per client (Mosquitto's default): enough to keep a link busy
(~20 per round trip), few held by a client that stops acknowledging."""
OUTAGE_S = 24 * 3600
"""How long the coordinator's queue holds every household's messages (its session's expiry)."""
MESSAGES_PER_INTERVAL = 2
"""Queued messages per household and interval: its reading, and a status or a resend."""
FLOOD_MESSAGES = 10_000
"""Headroom in the coordinator's queue for a burst of junk from one household."""
QUEUED_BYTES_PER_MESSAGE = 1024
"""Payload memory budget per queued message, bytes (a reading is ~300)."""


class BrokerConfigError(GridctlError):
    """A community configuration is missing or invalid."""


class Community(BaseModel):
    """Who may use a community's broker: its id and its households' ids."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    community: str = Field(pattern=NAME.pattern)
    households: Annotated[list[str], Field(min_length=1)]

    def model_post_init(self, _: object) -> None:
        for h in self.households:
            check_name(h)
            if h == WEB:
                raise ValueError(f"household id {WEB!r} is the web app's broker user")
        if len(set(self.households)) != len(self.households):
            raise ValueError("a household id appears twice")


def load_community(path: Path) -> Community:
    """A community from YAML: ``community: ID`` and ``households: [id, …]`` (or ``[{id: …}]``,
    as in a scenario file, whose ``name`` then stands for the community id)."""
    raw = read_yaml(path, BrokerConfigError)
    if not isinstance(raw, dict):
        raise BrokerConfigError(f"{path.name}: expected a mapping with community and households")
    raw = dict(raw)
    raw.setdefault("community", raw.get("name"))
    hh = raw.get("households")
    if isinstance(hh, list):
        raw["households"] = [h.get("id") if isinstance(h, dict) else h for h in hh]
    try:
        return Community.model_validate(raw)
    except (ValidationError, GridctlError, ValueError) as e:
        msg = describe_validation_error(e) if isinstance(e, ValidationError) else str(e)
        raise BrokerConfigError(f"{path.name}: {msg}") from None


def password_hash(
    password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """A Mosquitto 2 password-file hash: ``$7$iterations$salt$pbkdf2_sha512`` (base64)."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, hashed: str) -> bool:
    """Whether ``password`` is the one behind a ``$7$`` hash (False for any other format)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(password_hash(password, salt, int(parts[2])), hashed)


def read_passwd(path: Path) -> dict[str, str]:
    """A password file's hashes by user (``user:hash`` lines)."""
    users = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep:
            raise BrokerConfigError(f"{path}:{n}: expected user:hash")
        users[user] = hashed
    return users


def acl_text(community: str) -> str:
    """The ACL file: the coordinator owns the community; households only their own subtree."""
    base = f"{ROOT}/{community}"
    return "\n".join(
        [
            f"# gridctl ACL for community {community} (generated; anonymous clients get nothing)",
            f"user {COORDINATOR}",
            f"topic readwrite {base}/#",
            "",
            "# the web app: households online (status), their live telemetry and plans (read",
            "# only, both retained: the coordinator's own web service shows each household its",
            "# own devices now and its plan, authorizing every request server-side, keeps them",
            "# in memory only and never publishes them), members' signed votes; nothing else:",
            "# not the signed readings, and it may write no household's telemetry or plan",
            f"user {WEB}",
            f"topic read {base}/+/status",
            f"topic read {base}/+/telemetry",
            f"topic read {base}/+/plan",
            f"topic write {base}/+/vote",
            "",
            "# every household, by its user name (%u): its own subtree, its own plan, broadcasts",
            f"pattern write {base}/%u/telemetry",
            f"pattern write {base}/%u/reading",
            f"pattern write {base}/%u/status",
            f"pattern write {base}/%u/vote",
            f"pattern read {base}/%u/plan",
            f"pattern read {base}/{COORDINATOR}/#",
            "",
        ]
    )


Access = Literal["read", "write"]
ACCESS = {"read": frozenset({"read"}), "write": frozenset({"write"}),
          "readwrite": frozenset({"read", "write"})}  # fmt: skip


@dataclass(frozen=True)
class AclRule:
    """One ACL line: ``topic`` for one user, or ``pattern`` (``%u``: each user's name)."""

    user: str | None
    """The user a ``topic`` line is for; None for a pattern."""
    access: frozenset[str]
    topic: str
    """Topic filter the rule grants."""


class Acl:
    """The rules of an ACL file as ``acl_text`` writes it (Mosquitto's ``user``, ``topic`` and
    ``pattern`` lines), checked the way Mosquitto checks them: a user may do what some rule of
    theirs grants, nothing else."""

    def __init__(self, rules: list[AclRule]):
        self.rules = rules

    @classmethod
    def parse(cls, text: str, where: str = "acl") -> Acl:
        """Rules from ACL text; BrokerConfigError naming the line for anything else."""
        rules, user = [], None
        for n, raw in enumerate(text.splitlines(), 1):
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "user" and len(words) == 2:
                user = words[1]
            elif words[0] in ("topic", "pattern") and len(words) == 3 and words[1] in ACCESS:
                if words[0] == "topic" and user is None:
                    raise BrokerConfigError(f"{where}:{n}: topic before any user line")
                owner = user if words[0] == "topic" else None
                rules.append(AclRule(owner, ACCESS[words[1]], words[2]))
            else:
                raise BrokerConfigError(f"{where}:{n}: unsupported ACL line {raw.strip()!r}")
        return cls(rules)

    def filters(self, user: str, access: Access) -> list[str]:
        """The topic filters ``user`` has ``access`` to (a name with a wildcard or a level
        separator gets no pattern, as in Mosquitto)."""
        plain = not any(c in user for c in "+#/")
        return [r.topic.replace("%u", user) for r in self.rules if access in r.access
                and (r.user == user or (r.user is None and plain))]  # fmt: skip

    def allows(self, user: str, topic: str, access: Access) -> bool:
        """Whether ``user`` may read or write the topic ``topic`` (no wildcards)."""
        return any(topic_matches_sub(f, topic) for f in self.filters(user, access))

    def covers(self, user: str, topic_filter: str) -> bool:
        """Whether ``user`` may read every topic that ``topic_filter`` can match."""
        return any(_within(topic_filter, f) for f in self.filters(user, "read"))


def _within(inner: str, outer: str) -> bool:
    """Whether every topic matched by filter ``inner`` is matched by filter ``outer``."""
    a, b = inner.split("/"), outer.split("/")
    for k, level in enumerate(b):
        if level == "#":
            return True
        if k >= len(a) or a[k] == "#" or (level != "+" and a[k] in ("+", "#")):
            return False
        if level not in ("+", a[k]):
            return False
    return len(a) == len(b)


@dataclass(frozen=True)
class Tls:
    """Server certificate and key (PEM files) for a TLS listener; cafile: the CA of client
    certificates, which the listener then requires."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


def _install_tls(tls: Tls, folder: Path, owner: str | None) -> Tls:
    """Copies of the listener's files in ``folder`` (the files themselves if they are there
    already) that the broker can read once it runs as ``owner`` (None: as us); the key is
    readable by that user only. Mosquitto reads them after dropping root's rights, so files
    of root's (/etc/letsencrypt/…) would be out of its reach: run this again after renewing."""
    load_pair(tls.certfile, tls.keyfile)
    try:
        key, cert = tls.keyfile.read_text(encoding="ascii"), tls.certfile.read_bytes()
        client_ca = None if tls.cafile is None else tls.cafile.read_bytes()
    except (OSError, UnicodeDecodeError) as e:
        raise BrokerConfigError(f"TLS files: {e}") from None
    folder.mkdir(exist_ok=True)
    installed = Tls(folder / "server.pem", folder / "server.key",
                    None if client_ca is None else folder / "client-ca.pem")  # fmt: skip
    _write_private(installed.keyfile, key, owner)
    for path, data in ((installed.certfile, cert), (installed.cafile, client_ca)):
        if path is not None and data is not None:
            path.write_bytes(data)
            path.chmod(0o644)
    return installed


def queued_messages(households: int) -> int:
    """Messages a client's queue holds (``max_queued_messages``): the coordinator's queue over
    an ``OUTAGE_S`` absence, with ``FLOOD_MESSAGES`` to spare."""
    return MESSAGES_PER_INTERVAL * (OUTAGE_S // INTERVAL_S) * households + FLOOD_MESSAGES


def conf_text(
    out: Path, port: int, bind: str, tls: Tls | None, run_as: str | None, households: int
) -> str:
    """mosquitto.conf for the files in ``out`` (absolute paths) and ``households`` households."""
    queued = queued_messages(households)
    lines = [
        "# gridctl community broker (generated by `gridctl broker config`)",
        *([f"user {run_as}"] if run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out / 'passwd'}",
        f"acl_file {out / 'acl'}",
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
        f"max_queued_messages {queued}",
        f"max_queued_bytes {queued * QUEUED_BYTES_PER_MESSAGE}",
        "persistence true",
        f"persistence_location {out / 'data'}/",
        "autosave_interval 30",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        f"listener {port} {bind}".rstrip(),
        "use_username_as_clientid true",
    ]
    if tls is not None:
        lines += [f"certfile {tls.certfile}", f"keyfile {tls.keyfile}"]
        if tls.cafile is not None:
            lines += [f"cafile {tls.cafile}", "require_certificate true"]
    return "\n".join(lines) + "\n"


def is_loopback(bind: str) -> bool:
    """Whether listening on ``bind`` ("" = every interface) reaches this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _write_private(path: Path, text: str, owner: str | None = None) -> None:
    """Write ``text`` to a file only its owner (default: this process's user) can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    if owner is not None:
        shutil.chown(path, owner, owner)


def _broker_user(run_as: str | None) -> str | None:
    """The user mosquitto reads its files as when root starts it: ``run_as``, else the
    ``mosquitto`` system user (None: root itself, or not started by root, so as us)."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(run_as or "mosquitto").pw_name
    except KeyError:
        if run_as is not None:
            raise BrokerConfigError(f"run as {run_as!r}: no such user") from None
        return None
    return None if user == "root" else user


def unreachable_folder(out: Path, run_as: str | None = None) -> Path | None:
    """The first folder on the way to ``out`` that the broker's user (see ``_broker_user``)
    may not enter, so Mosquitto could not read its files there (None: none, or it runs as us)."""
    user = _broker_user(run_as)
    if user is None:
        return None
    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in [*reversed(out.resolve().parents), out.resolve()]:
        st = folder.stat()
        bit = 0o100 if st.st_uid == pw.pw_uid else (0o010 if st.st_gid in groups else 0o001)
        if not st.st_mode & bit:
            return folder
    return None


def write_broker_config(
    community: Community,
    out: Path,
    port: int = 1883,
    bind: str = "127.0.0.1",
    tls: Tls | None = None,
    run_as: str | None = None,
    insecure: bool = False,
) -> dict[str, str]:
    """Write mosquitto.conf, passwd, acl and credentials.json into ``out``; returns the
    credentials (user → password). Existing users keep their passwords.

    bind: address to listen on ("" = every interface). Plain MQTT sends passwords and
    readings in clear: beyond loopback it needs ``tls``, or ``insecure`` (BrokerConfigError
    otherwise). run_as: the user mosquitto runs as (its ``user`` option); None: mosquitto's
    default, which when started by root is the ``mosquitto`` system user, so the files it
    reads are handed to that user.
    """
    if not 1 <= port <= 65535:
        raise BrokerConfigError(f"--port {port}: must be 1-65535")
    if tls is None and not insecure and not is_loopback(bind):
        raise BrokerConfigError(
            f"--bind {bind!r}: plain MQTT beyond loopback sends passwords and readings in "
            "clear; give TLS (--tls-cert/--tls-key), or --insecure on a network you trust"
        )
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    broker_user = _broker_user(run_as)
    if broker_user is not None:
        shutil.chown(out / "data", broker_user, broker_user)
    cred_path = out / "credentials.json"
    creds: dict[str, str] = {}
    if cred_path.exists():
        try:
            old = json.loads(cred_path.read_text(encoding="utf-8"))
            creds = {str(k): str(v) for k, v in old["users"].items()}
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise BrokerConfigError(f"{cred_path}: unreadable ({e}); move it away first") from None
    users = [COORDINATOR, WEB, *community.households]
    for user in users:
        creds.setdefault(user, secrets.token_urlsafe(24))
    hashes = "".join(f"{u}:{password_hash(creds[u])}\n" for u in users)
    _write_private(out / "passwd", hashes, broker_user)
    _write_private(out / "acl", acl_text(community.community), broker_user)
    if tls is not None:
        tls = _install_tls(tls, out / "tls", broker_user)
    conf = conf_text(out, port, bind, tls, run_as, len(community.households))
    (out / "mosquitto.conf").write_text(conf, encoding="utf-8")
    doc = {
        "community": community.community,
        "broker": {"host": bind or "localhost", "port": port, "tls": tls is not None},
        "users": {u: creds[u] for u in users},
    }
    _write_private(cred_path, json.dumps(doc, indent=2) + "\n")
    return {u: creds[u] for u in users}
