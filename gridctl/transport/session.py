"""One MQTT connection kept alive: reconnect with backoff, last will, resubscription.

A ``Session`` wraps ``aiomqtt.Client``. ``run()`` connects, publishes ``online`` (retained) on
the status topic whose last will is ``offline`` (and says ``offline`` itself when cancelled),
subscribes, and hands every message to the handler; when the connection drops it waits (0.5 s
doubling up to ``backoff_max_s``, with jitter) and does it all again. The session is persistent
(fixed client id, which on a community broker is the user name: Mosquitto replaces any other;
MQTT 5: no clean start, kept a day; MQTT 3.1.1, for the embedded broker:
``clean_session=False``), so QoS 1 messages sent while a subscriber was away are delivered
when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

import aiomqtt
from pydantic import Field, model_validator

from gridctl.core import FilePath, GridctlError, Host, StrictModel, raise_if_cancelled, read_secret

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]
MqttVersion = Literal["5", "3.1.1"]
"""MQTT 5 for Mosquitto; 3.1.1 for the embedded broker (amqtt speaks no MQTT 5)."""


class BrokerSettings(StrictModel):
    """Where a client finds the community broker and who it is there."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = Field(None, repr=False)
    tls: bool = False
    cafile: Path | None = None
    """CA certificate to trust (PEM); None: the system's."""
    certfile: Path | None = None
    """Client certificate (PEM), for a listener that requires one; with ``keyfile``."""
    keyfile: Path | None = None
    mqtt_version: MqttVersion = "5"


def tls_context(b: BrokerSettings) -> ssl.SSLContext | None:
    """The TLS context for ``b`` (None without TLS); GridctlError naming a file that cannot
    be used."""
    if not b.tls:
        return None
    try:
        tls = ssl.create_default_context(cafile=None if b.cafile is None else str(b.cafile))
        if b.certfile is not None:
            tls.load_cert_chain(b.certfile, b.keyfile)
    except (OSError, ssl.SSLError) as e:
        files = ", ".join(str(f) for f in (b.cafile, b.certfile, b.keyfile) if f is not None)
        raise GridctlError(f"broker TLS files ({files}): {e}") from None
    return tls


class BrokerConfig(StrictModel):
    """The broker as a configuration file gives it: a password inline or in a file."""

    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: Annotated[str, Field(max_length=1024)] | None = None
    password: str | None = Field(None, repr=False, max_length=1024)
    password_file: FilePath | None = None
    tls: bool = False
    cafile: FilePath | None = None
    certfile: FilePath | None = None
    keyfile: FilePath | None = None
    mqtt_version: MqttVersion = "5"

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of password and password_file")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")
        if not self.tls and (self.cafile or self.certfile):
            raise ValueError("cafile, certfile and keyfile need tls: true")
        return self

    def relative_to(self, base: Path) -> BrokerConfig:
        """The same with its files taken relative to ``base`` (a config file's folder)."""
        files = {k: base / v for k in ("password_file", "cafile", "certfile", "keyfile")
                 if (v := getattr(self, k)) is not None}  # fmt: skip
        return self.model_copy(update=files)

    def settings(self, default_user: str, error: type[GridctlError]) -> BrokerSettings:
        """Session settings (the password file read now); ``error`` if it cannot be read."""
        password = self.password
        if self.password_file is not None:
            password = read_secret(self.password_file, error, "broker.password_file")
        return BrokerSettings(host=self.host, port=self.port,
                              username=self.username or default_user, password=password,
                              tls=self.tls, cafile=self.cafile, certfile=self.certfile,
                              keyfile=self.keyfile, mqtt_version=self.mqtt_version)  # fmt: skip


class Session:
    """A kept-alive MQTT session for one client.

    client_id: stable identifier (a persistent session is keyed by it); on a community broker
    the user name, which Mosquitto puts in place of any other.
    subscriptions: topic filters, subscribed with QoS 1 on every (re)connect.
    status_topic: where ``online`` is published (retained) and the will ``offline`` waits.
    keepalive_s: the broker sends the will after 1.5 x this without a word from the client.
    handler: awaited with (topic, payload) for every message; an exception in it is logged
    and counted (``handler_errors``), never ends the session.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        client_id: str,
        subscriptions: Sequence[str],
        handler: Handler,
        status_topic: str | None = None,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        keepalive_s: int = 15,
    ):
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.handler = handler
        self.status_topic = status_topic
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.connected = asyncio.Event()
        self.connects = 0
        self.connected_at = 0.0
        """time.monotonic() of the last connect."""
        self.handler_errors = 0
        self._client: aiomqtt.Client | None = None
        self._rng = random.Random(client_id)
        self._tls = tls_context(broker)

    def _make_client(self) -> aiomqtt.Client:
        b = self.broker
        will = None
        if self.status_topic is not None:
            will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        persistent: dict[str, object] = (
            {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": False,
             "properties": _session_expiry()}
            if b.mqtt_version == "5"
            else {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        )  # fmt: skip
        return aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            identifier=self.client_id,
            **persistent,  # type: ignore[arg-type]
            will=will,
            tls_context=self._tls,
            timeout=self.timeout_s,
            keepalive=self.keepalive_s,
        )

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff_s = 0.5
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    self.connects += 1
                    backoff_s = 0.5
                    for f in self.subscriptions:
                        await client.subscribe(f, qos=1)
                    # "online" only once subscribed: peers may answer it at once (controllers
                    # resend their unacknowledged readings when the coordinator comes online)
                    if self.status_topic is not None:
                        await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    self.connected_at = time.monotonic()
                    self.connected.set()
                    log.info("mqtt connected client=%s broker=%s:%s", self.client_id,
                             self.broker.host, self.broker.port)  # fmt: skip
                    try:
                        async for m in client.messages:
                            await self._handle(str(m.topic), m.payload)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except aiomqtt.MqttError as e:
                log.warning("mqtt connection lost client=%s error=%s retry_in_s=%.1f",
                            self.client_id, e, backoff_s)  # fmt: skip
            finally:
                self.connected.clear()
                self._client = None
            raise_if_cancelled()
            await asyncio.sleep(backoff_s * (0.75 + 0.5 * self._rng.random()))
            backoff_s = min(2 * backoff_s, self.backoff_max_s)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """On a clean stop the broker sends no will: say ``offline`` ourselves (best effort)."""
        if self.status_topic is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=2.0)

    async def _handle(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        try:
            await self.handler(topic, data)
        except Exception:
            self.handler_errors += 1
            log.exception("message handler failed client=%s topic=%s", self.client_id, topic)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Publish once; True when the broker took it (PUBACK for QoS 1), False when the
        session is down or the broker did not confirm in time (the caller keeps it to resend)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=self.timeout_s)
        except aiomqtt.MqttError as e:
            log.info("publish failed client=%s topic=%s error=%s", self.client_id, topic, e)
            return False
        return True


def _session_expiry() -> object:
    """MQTT 5 CONNECT properties: keep the session (and queued QoS 1 messages) for a day."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 24 * 3600
    return props
