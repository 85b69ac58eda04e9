import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.settlement.pool import ISSUANCE, POOL, allocate, settle_interval


@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30).filter(
        lambda w: sum(w) > 0
    ),
)
def test_allocate_is_exact_and_proportional(total: int, weights: list[int]) -> None:
    parts = allocate(total, np.array(weights))
    assert int(parts.sum()) == total
    ideal = np.array([total * w / sum(weights) for w in weights])
    assert np.all(np.abs(parts - ideal) < 1.0 + 1e-6 * ideal)
    assert np.all(parts[np.array(weights) == 0] == 0)


def test_allocate_rejects_impossible_split() -> None:
    with pytest.raises(ValueError):
        allocate(5, np.array([0, 0]))


def test_surplus_is_shared_before_export_and_paid_at_community_price() -> None:
    # h1 exports 3 kWh, h2 imports 1 kWh, h3 imports 1 kWh: 2 kWh shared, 1 kWh goes upstream.
    st_ = settle_interval(
        7, ["h1", "h2", "h3"], np.array([0, 1000, 1000]), np.array([3000, 0, 0]), 0.20, 1.5
    )
    assert st_.supplied_wh.tolist() == [2000, 0, 0]
    assert st_.received_wh.tolist() == [0, 1000, 1000]
    assert st_.paid_micro.tolist() == [0, 200_000, 200_000]
    assert st_.earned_micro.tolist() == [400_000, 0, 0]
    assert st_.tokens_micro.tolist() == [3_000_000, 0, 0]
    for tx in st_.transactions:
        assert tx.unbalanced_assets() == []
    pool = sum(p.amount for tx in st_.transactions for p in tx.postings if p.account == POOL)
    issued = -sum(p.amount for tx in st_.transactions for p in tx.postings if p.account == ISSUANCE)
    assert pool == 0 and issued == 3_000_000


def test_no_exporter_means_nothing_booked() -> None:
    st_ = settle_interval(1, ["a", "b"], np.array([500, 700]), np.array([0, 0]), 0.2, 1.0)
    assert st_.transactions == () and st_.supplied_wh.sum() == 0


@given(
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=20),
    st.floats(0, 1),
    st.floats(0, 5),
)
def test_every_settlement_balances(
    flows: list[tuple[int, int]], price: float, reward: float
) -> None:
    imp = np.array([f[0] for f in flows])
    exp = np.array([f[1] for f in flows])
    st_ = settle_interval(3, [f"h{k}" for k in range(len(flows))], imp, exp, price, reward)
    assert all(tx.unbalanced_assets() == [] for tx in st_.transactions)
    assert st_.supplied_wh.sum() == st_.received_wh.sum() == min(imp.sum(), exp.sum())
    assert np.all(st_.supplied_wh <= exp) and np.all(st_.received_wh <= imp)
    assert st_.paid_micro.sum() == st_.earned_micro.sum()
