"""The embedded broker: amqtt serving a community configured by ``write_broker_config``.

For machines without Mosquitto (``gridctl sim --wire`` falls back to it). It serves the same
directory: it listens where ``mosquitto.conf`` says, checks users against the same password
file (Mosquitto's ``$7$`` PBKDF2 hashes) and applies the same ACL file, so anonymous clients are
refused, a household writes only its own subtree and reads only its own plan and the community
broadcasts. Run it as ``python -m gridctl.transport.embedded -c DIR/mosquitto.conf``
(``launcher.running_broker`` does).

Where it differs from Mosquitto:

- MQTT 3.1.1 only (amqtt has no MQTT 5): clients connect with ``mqtt_version="3.1.1"``, whose
  persistent session is ``clean_session=False``; sessions of absent clients are kept a day.
- A subscription must stay inside what its user may read; Mosquitto accepts any filter and
  drops what the user may not read. (amqtt sends retained messages to a new subscription
  without its receive check; a filter reaching beyond the user's rights is refused instead.)
- Retained messages and sessions live in memory: a restart forgets them.
- No TLS listener and no broker-side packet size limit (the protocol's own limit still holds).
- A client id belongs to the first user that logs in with it (and another user's CONNECT with
  it is refused); Mosquitto puts each client's user name in place of its client id.
- amqtt handles a CONNECT's session before authenticating it, so a client that knows another's
  client id can end that client's connection and reset its persistent session without valid
  credentials (it reads nothing). Listen on loopback only, as the simulation does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext, BrokerConfig, ListenerConfig
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from gridctl.transport.broker import Acl, BrokerConfigError, password_matches, read_passwd

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600
"""How long the broker keeps an absent client's session and its queued QoS 1 messages, s."""
IGNORED = frozenset({
    "user", "per_listener_settings", "max_packet_size", "max_inflight_messages",
    "max_queued_messages", "max_queued_bytes", "use_username_as_clientid", "persistence",
    "persistence_location", "autosave_interval", "log_dest", "log_type",
})  # fmt: skip
"""mosquitto.conf options that concern Mosquitto's process, files or limits only (the embedded
broker binds a client id to its first user instead of ``use_username_as_clientid``)."""


@dataclass(frozen=True)
class EmbeddedConfig:
    """What the embedded broker takes from a generated mosquitto.conf."""

    bind: str
    """Address to listen on ("" = every interface)."""
    port: int
    passwd: Path
    acl: Path


def read_conf(path: Path) -> EmbeddedConfig:
    """The listener, password and ACL files of a mosquitto.conf that ``write_broker_config``
    wrote; BrokerConfigError for anything the embedded broker cannot honour (TLS, anonymous)."""
    opts: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BrokerConfigError(f"{path}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#") or words[0] in IGNORED:
            continue
        if words[0] not in ("listener", "password_file", "acl_file", "allow_anonymous"):
            raise BrokerConfigError(f"{path}:{n}: {words[0]} is not supported by the embedded "
                                    "broker (install Mosquitto)")  # fmt: skip
        opts[words[0]] = words[1:]
    if opts.get("allow_anonymous") != ["false"]:
        raise BrokerConfigError(f"{path}: the embedded broker needs allow_anonymous false")
    try:
        port, *bind = opts["listener"]
        return EmbeddedConfig(bind=" ".join(bind), port=int(port),
                              passwd=Path(opts["password_file"][0]),
                              acl=Path(opts["acl_file"][0]))  # fmt: skip
    except (KeyError, IndexError, ValueError):
        raise BrokerConfigError(
            f"{path}: needs listener PORT [ADDRESS], password_file and acl_file"
        ) from None


@dataclass
class Files:
    """Plugin configuration: the community's password and ACL files."""

    passwd: str = ""
    acl: str = ""
    users: dict[str, str] = field(init=False)
    rules: Acl = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.users = read_passwd(Path(self.passwd))
            self.rules = Acl.parse(Path(self.acl).read_text(encoding="utf-8"), self.acl)
        except OSError as e:
            raise BrokerConfigError(f"{e.filename}: {e.strerror}") from None


class PasswordCheck(BaseAuthPlugin):
    """Admits a user whose password matches the password file, whose last will, if any, goes
    to a topic the user may write, and whose client id no other user has used; refuses
    anonymous clients.

    The client id is bound to its first user because amqtt hands a returning client id the
    session it had, with its subscriptions and queued messages, whoever logs in.
    """

    Config = Files

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.files: Files = self.config
        self.owners: dict[str, str] = {}
        """User of each client id seen."""

    async def authenticate(self, *, session: Session) -> bool:
        """Whether the CONNECT's user, password, will and client id are acceptable."""
        user, hashed = session.username, self.files.users.get(session.username or "")
        if user is None or hashed is None or not password_matches(session.password or "", hashed):
            log.warning("refused login user=%s client=%s", user, session.client_id)
            return False
        will = session.will_topic if session.will_flag else None
        if will is not None and not self.files.rules.allows(user, will, "write"):
            log.warning("refused last will user=%s topic=%s", user, will)
            return False
        if self.owners.setdefault(session.client_id or "", user) != user:
            log.warning("refused another user's client id user=%s client=%s", user,
                        session.client_id)  # fmt: skip
            return False
        return True


class AclCheck(BaseTopicPlugin):
    """Applies the ACL file to every publish, subscription and delivery."""

    Config = Files

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.files: Files = self.config

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None,
        action: Action | None = None,
    ) -> bool:  # fmt: skip
        """Whether ``session``'s user may do ``action`` on ``topic`` (a filter to subscribe)."""
        user = session.username if session is not None else None
        if user is None or topic is None:
            return False
        rules = self.files.rules
        if action == Action.SUBSCRIBE:
            return rules.covers(user, topic)
        return rules.allows(user, topic, "write" if action == Action.PUBLISH else "read")


class GuardedBroker(Broker):
    """amqtt's broker with retained messages checked against the reader's rights, and with
    what a client published delivered even when it disconnects at once.

    amqtt offers a (re)connecting client the retained messages of every filter anyone
    subscribed, and without its receive check; here a client gets those of its own
    subscriptions that it may read, at the QoS it was granted. amqtt acknowledges a QoS 1
    PUBLISH when it queues it and leaves the queue behind when the connection ends; here what
    is left is delivered then (after the client's will, if it died).
    """

    async def _client_message_loop(self, client_session: Session, handler: Any) -> None:
        await super()._client_message_loop(client_session, handler)
        queue = client_session.delivered_message_queue
        while not queue.empty():
            message = asyncio.get_running_loop().create_future()
            message.set_result(queue.get_nowait())
            await self._handle_message_delivery(client_session, handler, message)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter = subscription[0]
        granted = [q for s, q in self._subscriptions.get(topic_filter, []) if s is session]
        handler = self._get_handler(session)
        if not granted or handler is None:
            return
        sends = [
            handler.mqtt_publish(m.topic, m.data, min(granted[0], m.qos or 0), retain=True)
            for topic, m in list(self._retained_messages.items())
            if self._matches(topic, topic_filter)
            and await self._topic_filtering(session, topic, Action.RECEIVE)
        ]
        await asyncio.gather(*sends)


def broker_config(conf: EmbeddedConfig) -> dict[str, Any]:
    """amqtt's configuration for ``conf``: one TCP listener, our two checks, nothing else."""
    files = {"passwd": str(conf.passwd), "acl": str(conf.acl)}
    return {
        "listeners": {"default": ListenerConfig(bind=f"{conf.bind}:{conf.port}")},
        "session_expiry_interval": SESSION_EXPIRY_S,
        "plugins": {f"{__name__}.PasswordCheck": files, f"{__name__}.AclCheck": files},
    }


async def serve(conf: EmbeddedConfig) -> None:
    """Run the broker until cancelled."""
    broker = GuardedBroker(BrokerConfig(**broker_config(conf)))
    await broker.start()
    log.info("embedded broker listening port=%d", conf.port)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    """``python -m gridctl.transport.embedded -c mosquitto.conf``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", dest="conf", type=Path, required=True, help="mosquitto.conf")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        conf = read_conf(args.conf)
        Files(str(conf.passwd), str(conf.acl))  # unreadable files: one line, not a traceback
    except BrokerConfigError as e:
        parser.exit(2, f"error: {e}\n")
    asyncio.run(serve(conf))


if __name__ == "__main__":
    main()
