"""A member's vote: the message on ``gridctl/v1/<community>/<household>/vote`` and the bytes
its member key signs.

A member key (Ed25519) is a person's, enrolled for a household apart from the household's
meter key: a person votes, a meter measures. The signature covers::

    b"gridctl/vote/v1" || canonical([community, proposal, household, choice, seq, key_id])

so a vote names its community, proposal and household and cannot be replayed onto another.
``seq`` is the voter's own counter (the CLI uses milliseconds since the epoch): of a household's
valid votes on a proposal received before it closes, the one with the highest ``seq`` counts
(a later receipt breaks a tie), so an old vote resent does not undo a newer one.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field

from gridctl.core import StrictModel
from gridctl.settlement.canonical import canonical
from gridctl.settlement.signing import key_id_of, public_bytes

VOTE_DOMAIN = b"gridctl/vote/v1"
CHOICES = ("yes", "no", "abstain")
Choice = Literal["yes", "no", "abstain"]
_NAME = r"^[A-Za-z0-9_-]{1,32}$"
MAX_PROPOSAL = 2**40
MAX_SEQ = 2**53


def vote_payload(community: str, proposal: int, household: str, choice: str, seq: int,
                 key_id: str) -> bytes:  # fmt: skip
    """The bytes a member key signs (see the module doc)."""
    return VOTE_DOMAIN + canonical([community, proposal, household, choice, seq, key_id])


class VoteMessage(StrictModel):
    """A signed vote. seq: the voter's counter (highest counts). key_id: the member key's id
    (16 hex). sig: Ed25519 signature over ``payload()``, 128 hex."""

    v: Literal[1] = 1
    community: str = Field(pattern=_NAME)
    proposal: Annotated[int, Field(ge=1, le=MAX_PROPOSAL)]
    household: str = Field(pattern=_NAME)
    choice: Choice
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    sig: str = Field(pattern=r"^[0-9a-f]{128}$")

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return vote_payload(self.community, self.proposal, self.household, self.choice,
                            self.seq, self.key_id)  # fmt: skip

    def digest(self) -> str:
        """sha256 (hex) of payload and signature: identifies a received vote (a duplicate
        delivery has the same digest)."""
        return hashlib.sha256(self.payload() + bytes.fromhex(self.sig)).hexdigest()


def sign_vote(key: Ed25519PrivateKey, community: str, proposal: int, household: str,
              choice: str, seq: int) -> VoteMessage:  # fmt: skip
    """A vote signed with the member key ``key``."""
    key_id = key_id_of(public_bytes(key))
    sig = key.sign(vote_payload(community, proposal, household, choice, seq, key_id))
    return VoteMessage(community=community, proposal=proposal, household=household,
                       choice=choice, seq=seq, key_id=key_id, sig=sig.hex())  # type: ignore[arg-type]  # fmt: skip
