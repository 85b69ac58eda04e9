"""A scenario's governance script: members, the proposals it submits and the votes they send.

Every household of a scenario is a member from the run's first interval, with a member key
derived from the seed (``enrol.simulated_member_key``). At each interval the run submits the
proposals scripted for it (``propose_due``) and its members sign and send the votes scripted
for it (``votes_due``): the in-process run hands them to ``Governance.advance`` as received
from each voter's own topic; the wire run publishes each on its voter's vote topic, through
its controller's connection, for the coordinator to record. Either way the ledger records the
same proposals, votes, tallies and enactments.
"""

from __future__ import annotations

from collections import defaultdict

from gridctl.coordinator.assembly import charter
from gridctl.core import interval_of
from gridctl.governance.book import Governance, Received
from gridctl.governance.votes import VoteMessage, sign_vote
from gridctl.settlement.enrol import simulated_member_key
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.signing import public_bytes
from gridctl.sim.scenario import Scenario, ScriptedProposal

VOTE_SEQ = 1
"""The counter of a scripted vote (each member votes once per proposal)."""


class Script:
    """A scenario's scripted proposals and votes, by interval (see the module doc)."""

    def __init__(self, scn: Scenario):
        self.scn = scn
        self.community = scn.community_id
        self._proposals: dict[int, list[tuple[int, ScriptedProposal]]] = defaultdict(list)
        self._votes: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
        for k, p in enumerate(scn.governance.proposals):
            self._proposals[interval_of(p.at)].append((k, p))
            for h, choice in p.votes.ballots():
                self._votes[interval_of(p.votes_at)].append((k, h, choice))
        self.ids: dict[int, int] = {}
        """Proposal id of each submitted scripted proposal, by its index in the script."""

    @classmethod
    def of(cls, scn: Scenario) -> Script | None:
        """The script of ``scn``; None when it scripts no proposal (no governance at all)."""
        return cls(scn) if scn.governance.proposals else None

    def open(self, ledger: Ledger) -> Governance:
        """The community's governance in ``ledger``, every household enrolled."""
        gov = Governance(ledger, self.community, charter(self.scn))
        self.enrol(gov)
        return gov

    def enrol(self, gov: Governance) -> None:
        """Enrol every household's member key from the run's first interval."""
        for h in self.scn.households:
            key = public_bytes(simulated_member_key(self.scn.seed, h.id))
            gov.enrol_member(h.id, key, self.scn.first_interval)

    def propose_due(self, gov: Governance, interval: int) -> None:
        """Submit the proposals scripted for ``interval``."""
        for k, p in self._proposals.get(interval, []):
            row = gov.propose(p.parameter, p.value, p.rationale, p.proposer, p.window, p.delay,
                              interval)  # fmt: skip
            self.ids[k] = row.proposal

    def votes_due(self, interval: int) -> list[tuple[str, VoteMessage]]:
        """(voter, signed vote) of every vote scripted for ``interval``, in script order (its
        proposal submitted before)."""
        return [
            (h, sign_vote(simulated_member_key(self.scn.seed, h), self.community, self.ids[k],
                          h, choice, VOTE_SEQ))
            for k, h, choice in self._votes.get(interval, [])
        ]  # fmt: skip

    def received(self, interval: int) -> list[Received]:
        """The votes scripted for ``interval``, as received from each voter's own topic."""
        return [Received(h, v, interval) for h, v in self.votes_due(interval)]
