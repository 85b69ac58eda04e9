"""Enrol a community: register every meter with its key when households join.

In production each controller generates its key and sends the public half when its household
joins; a simulation derives every key from the scenario seed, so the same seed gives the same
signatures and the same ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.core import count_energy_wh, interval_hours
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.registry import register_meter
from gridctl.settlement.signing import MeterSigner, key_from_seed, public_bytes

TRANSFORMER_METER = "feeder/transformer"


def main_meter(household: str) -> str:
    """Id of a household's connection meter."""
    return f"{household}/main"


def simulated_coordinator_key(seed: int) -> Ed25519PrivateKey:
    """The coordinator key of a simulation: derived from the seed, like the meters' keys."""
    return key_from_seed(f"gridctl-sim/{seed}/coordinator".encode())


def simulated_member_key(seed: int, household: str) -> Ed25519PrivateKey:
    """A simulated household's member key (it votes; the meter key measures): derived from the
    seed, like the meters' keys."""
    return key_from_seed(f"gridctl-sim/{seed}/member/{household}".encode())


def enrol_simulated(
    ledger: Ledger,
    households: Sequence[str],
    rated_w: Sequence[float],
    first_interval: int,
    seed: int,
    transformer_rated_w: float | None = None,
) -> dict[str, MeterSigner]:
    """Register a main meter per household (and the transformer meter) with keys derived from
    ``seed``; returns a signer per meter id, counters starting at 0 Wh.

    rated_w: each household's connection rating, W. transformer_rated_w: W (None: no meter).
    """
    meters = [
        (main_meter(h), h, "main", float(p)) for h, p in zip(households, rated_w, strict=True)
    ]
    if transformer_rated_w is not None:
        meters.append((TRANSFORMER_METER, None, "transformer", float(transformer_rated_w)))
    signers = {}
    for meter, household, role, p in meters:
        key = key_from_seed(f"gridctl-sim/{seed}/{meter}".encode())
        register_meter(ledger, meter, household, role, p, public_bytes(key), first_interval)
        signers[meter] = MeterSigner(meter, key)
    return signers


class SyntheticCommunity:
    """Households with random but physically consistent meters, for tests and benchmarks.

    Each interval a household draws a random net exchange (W, load convention) within its
    rating; the transformer meter sees their sum plus a small loss. Seeded, so repeatable.
    """

    def __init__(
        self,
        n_households: int,
        first_interval: int,
        seed: int = 0,
        rated_w: float = 17_250.0,
        with_transformer: bool = True,
    ):
        import numpy as np

        self.households = [f"h{k:05d}" for k in range(n_households)]
        self.first_interval = first_interval
        self.rated_w = rated_w
        self.seed = seed
        self.with_transformer = with_transformer
        self._rng = np.random.default_rng(seed)
        self._imp = np.zeros(n_households, dtype=np.int64)
        self._exp = np.zeros(n_households, dtype=np.int64)
        self._t_imp = 0
        self._t_exp = 0
        self.signers: dict[str, MeterSigner] = {}

    def enrol(self, ledger: Ledger) -> dict[str, MeterSigner]:
        """Register every meter in ``ledger``; returns the signers."""
        self.signers = enrol_simulated(
            ledger,
            self.households,
            [self.rated_w] * len(self.households),
            self.first_interval,
            self.seed,
            transformer_rated_w=self.rated_w * len(self.households)
            if self.with_transformer
            else None,
        )
        return self.signers

    def readings(self, interval: int) -> list:
        """Signed readings of every meter for the next interval (call with increasing intervals)."""
        import numpy as np

        n = len(self.households)
        p_w = self._rng.uniform(-0.6, 0.6, n) * self.rated_w
        e_wh = np.round(p_w * interval_hours()).astype(np.int64)
        self._imp, self._exp = count_energy_wh(self._imp, self._exp, e_wh)
        loss = int(0.01 * np.abs(e_wh).sum())
        self._t_imp, self._t_exp = count_energy_wh(self._t_imp, self._t_exp, int(e_wh.sum()) + loss)
        out = [
            self.signers[main_meter(h)].sign(interval, int(i), int(e))
            for h, i, e in zip(self.households, self._imp, self._exp, strict=True)
        ]
        if self.with_transformer:
            t_imp, t_exp = int(self._t_imp), int(self._t_exp)
            out.append(self.signers[TRANSFORMER_METER].sign(interval, t_imp, t_exp))
        return out
