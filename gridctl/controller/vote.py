"""A member's vote from the household's box (``gridctl gov vote``): signed with the member key
and published once, QoS 1, on the household's own vote topic with the controller's broker
credentials.

The household cannot see the coordinator's ledger, so only what it can check here is refused
here (the choice, the member key file, the proposal id's range); the coordinator records every
vote it receives and refuses the rest with a reason (unknown or closed proposal, a key not
enrolled for the household, …; see ``governance.state.vote_reason``).

On a community broker a user has one connection at a time: publishing as the household ends
the controller's own connection for a moment (it reconnects and resubscribes at once). The vote
connects with a clean, unkept session, so it neither takes nor wipes the controller's queue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from gridctl.controller.config import ControllerConfig
from gridctl.controller.keys import load_key_file
from gridctl.core import GridctlError
from gridctl.governance.votes import CHOICES, MAX_PROPOSAL, VoteMessage, sign_vote
from gridctl.protocol import encode, household_topic
from gridctl.transport.session import tls_context


def member_vote(cfg: ControllerConfig, key_file: Path, proposal: int, choice: str,
                seq: int) -> VoteMessage:  # fmt: skip
    """The household's vote on ``proposal``, signed with the member key in ``key_file``.
    seq: the voter's counter (the CLI: ms since the epoch; the highest counts)."""
    if choice not in CHOICES:
        raise GridctlError(f"choice {choice!r:.20}: one of {', '.join(CHOICES)}")
    if not 1 <= proposal <= MAX_PROPOSAL:
        raise GridctlError(f"proposal {proposal}: an id from 1 to {MAX_PROPOSAL}")
    return sign_vote(load_key_file(key_file), cfg.community, proposal, cfg.household, choice, seq)


async def publish_vote(cfg: ControllerConfig, vote: VoteMessage, timeout_s: float = 10.0) -> str:
    """Publish ``vote`` on the household's vote topic and wait for the broker to take it
    (PUBACK); returns the topic. GridctlError if it could not be delivered."""
    b = cfg.broker_settings()
    topic = household_topic(cfg.community, cfg.household, "vote")
    session: dict[str, object] = (
        {"protocol": aiomqtt.ProtocolVersion.V5}  # clean start, session expires at once
        if b.mqtt_version == "5"
        else {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": True}
    )
    client = aiomqtt.Client(
        b.host, b.port, username=b.username, password=b.password, tls_context=tls_context(b),
        timeout=timeout_s, **session,  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s), client:
            await client.publish(topic, encode(vote), qos=1, timeout=timeout_s)
    except (aiomqtt.MqttError, TimeoutError) as e:
        raise GridctlError(
            f"vote not delivered to the broker at {b.host}:{b.port}: {e or 'timed out'}"
        ) from None
    return topic
