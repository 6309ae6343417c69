"""Pareto frontier: the fast paths agree with the all-pairs definition on random inputs (ties, duplicates,
NaN, infinities), on every code path (2-D, cells, 3-D sweep, sort-filter-skyline, redundant columns, wide keys),
and the frontier does not depend on row order, blocks, or monotone rescaling of a column."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from planner.search.pareto import dominated_by_any, pareto_mask

VALUES = st.sampled_from([0.0, 1.0, 2.0, 2.5, 3.0, -1.0, np.nan, np.inf, -np.inf])


def brute(x: np.ndarray) -> np.ndarray:
    """The definition: not beaten by any row (weakly everywhere, strictly somewhere); NaN counts as -inf."""
    x = np.where(np.isnan(x), -np.inf, np.asarray(x, float))
    return ~dominated_by_any(x, x)


def check_large(x: np.ndarray, mask: np.ndarray) -> None:
    """Exact check without n^2 work when the frontier is small: no row beats a frontier row, and every other row
    is beaten by a frontier row (dominance is transitive, so some frontier row beats every dominated row)."""
    assert mask.any()
    assert not dominated_by_any(x[mask], x).any()
    assert dominated_by_any(x[~mask], x[mask]).all()


@st.composite
def tables(draw, max_rows=60):
    d = draw(st.integers(1, 5))
    n = draw(st.integers(0, max_rows))
    return draw(arrays(np.float64, (n, d), elements=VALUES))


@settings(max_examples=300, deadline=None)
@given(tables())
def test_matches_brute_force_with_ties_duplicates_nan(x):
    assert (pareto_mask(x) == brute(x)).all()


@settings(max_examples=100, deadline=None)
@given(tables(), st.randoms(use_true_random=False))
def test_row_order_blocks_and_monotone_rescaling_do_not_matter(x, rnd):
    base = pareto_mask(x)
    perm = np.array(rnd.sample(range(len(x)), len(x)), dtype=np.int64)
    assert (pareto_mask(x[perm]) == base[perm]).all()
    blocks = np.array([rnd.randrange(3) for _ in range(len(x))])
    assert (pareto_mask(x, blocks=blocks) == base).all()
    if len(x):
        y = x.copy()
        fin = np.isfinite(y[:, 0])
        y[fin, 0] = np.exp(y[fin, 0]) * 7.0 - 3.0  # strictly increasing; infinities and NaN stay as they are
        assert (pareto_mask(y) == base).all()


def test_nan_ranks_below_every_number():
    x = np.array([[1.0, np.nan], [1.0, -1e300], [0.5, np.nan]])
    # (1, -1e300) beats (1, NaN) and (0.5, NaN)
    assert pareto_mask(x).tolist() == [False, True, False]
    # duplicates share their fate, NaN duplicates included
    y = np.array([[np.nan, 2.0], [np.nan, 2.0], [0.0, 1.0]])
    assert pareto_mask(y).tolist() == [True, True, True]


@pytest.mark.parametrize("seed", range(2))
def test_each_path_on_larger_inputs(seed):
    rng = np.random.default_rng(seed)
    n = 6000
    cont = rng.random((n, 3))
    acc = rng.choice([0.96, 0.98, 0.99, 1.0], n)  # few levels: the cell method
    ctx = rng.choice([8192.0, 32768.0, 131072.0], n)
    planner_like = np.column_stack([cont[:, 0], cont[:, 1], acc, ctx])
    anti3 = (cont / cont.sum(axis=1, keepdims=True))[:2000]  # 3-D, every row on the frontier: the sweep
    five = rng.random((n, 5))  # many distinct values in every column: wide keys and the skyline scan
    ints = rng.integers(0, 40, (n, 4)).astype(float)  # many cells, ties everywhere
    for x in (planner_like, anti3, five, ints):
        m = pareto_mask(x)
        if m.sum() < 2000:
            check_large(x, m)
        else:
            assert (m == brute(x)).all()


def test_cost_that_follows_throughput_per_device():
    """Within one device $ per token is a decreasing function of tokens/s per GPU: with device blocks the column
    is recognised as redundant there, and the answer is the same as the definition's."""
    rng = np.random.default_rng(7)
    n = 5000
    tok_gpu = rng.lognormal(5, 1, n)
    tok_user = 5e4 / tok_gpu * rng.lognormal(0, 0.3, n)
    hw = rng.integers(0, 4, n)
    price = np.array([2.0, 3.5, 6.0, 1.1])[hw]
    usd = price / (tok_gpu * 3600.0) * 1e6
    x = np.column_stack([tok_gpu, tok_user, rng.choice([0.97, 1.0], n), -usd])
    m = pareto_mask(x, blocks=hw)
    check_large(x, m)
    assert (pareto_mask(x) == m).all()


def test_two_columns_keep_the_staircase():
    x = np.array([[3, 1], [2, 2], [1, 3], [1, 1], [2, 2], [0, 3]], float)
    assert pareto_mask(x).tolist() == [True, True, True, False, True, False]


def test_a_rare_level_missed_by_sampling_still_counts():
    """Few-level columns are ranked against the levels of a sample; a level the sample missed must not be lost."""
    rng = np.random.default_rng(11)
    n = 9000
    x = np.column_stack([rng.random(n), rng.random(n), rng.choice([0.97, 0.98, 0.99], n)])
    x[4001] = [0.5, 0.5, 0.999]  # the only row at this accuracy, off the sampling stride
    m = pareto_mask(x)
    assert m[4001]
    check_large(x, m)
