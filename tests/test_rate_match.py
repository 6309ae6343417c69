"""Disaggregated pools are sized by rate matching in closed form (search/evaluate.rate_match): the same best pools as
trying every prefill-worker count up to the GPU budget, on random inputs."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.search.evaluate import rate_match


def brute(r_pf, r_dec, g_pf, g_dec, budget, osl):
    best = (0.0, 0, 0)
    for x in range(1, budget):
        y = np.floor((budget - x * g_pf) / g_dec)
        if y < 1 or x * g_pf >= budget:
            continue
        tok = min(x * r_pf, y * r_dec) * osl / (x * g_pf + y * g_dec)
        if tok > best[0]:
            best = (tok, x, y)
    return best


@settings(max_examples=300, deadline=None)
@given(r_pf=st.floats(0.01, 500), r_dec=st.floats(0.01, 500), g_pf=st.sampled_from([1, 2, 4, 8, 16]),
       g_dec=st.sampled_from([1, 2, 4, 8, 16]), budget=st.integers(2, 512))
def test_closed_form_matches_every_count(r_pf, r_dec, g_pf, g_dec, budget):
    tok, x, y = rate_match([r_pf], [r_dec], [g_pf], [g_dec], budget, 100.0)
    want = brute(r_pf, r_dec, g_pf, g_dec, budget, 100.0)
    assert tok[0] == np.float64(want[0]) or abs(tok[0] - want[0]) <= 1e-9 * max(want[0], 1.0)
    if want[0] > 0:
        assert min(x[0] * r_pf, y[0] * r_dec) * 100.0 / (x[0] * g_pf + y[0] * g_dec) == tok[0]


def _full_list(r_pf, r_dec, g_pf, g_dec, budget, osl):
    """The pick of the whole candidate list (x = 1, x_lo, x_hi and both clipped matches per y), first best in order."""
    from planner.search.evaluate import _rate_match_block

    cols = (np.asarray(v, float)[:, None] for v in (r_pf, r_dec, g_pf, g_dec))
    return _rate_match_block(*cols, budget, osl, every=True)[:3]


def test_short_list_picks_what_the_whole_list_picks():
    """rate_match evaluates half the candidates and falls back to the whole list where two pools tie exactly; small
    whole-number rates make such ties (x, y and 2x, 2y share tokens/s per GPU) common here."""
    rng = np.random.default_rng(7)
    for _ in range(400):
        n, budget = 16, int(rng.integers(2, 100))
        args = (rng.integers(1, 6, n) * rng.choice([0.5, 1.0, 2.0]), rng.integers(1, 6, n).astype(float),
                rng.choice([1, 2, 4, 8], n).astype(float), rng.choice([1, 2, 4, 8], n).astype(float), budget,
                float(rng.integers(1, 3000)))
        for got, want in zip(rate_match(*args), _full_list(*args)):
            np.testing.assert_array_equal(got, want)


def test_blocks_do_not_change_the_result(monkeypatch):
    import planner.search.evaluate as ev

    rng = np.random.default_rng(3)
    n = 5000
    args = (rng.uniform(0.01, 500, n), rng.uniform(0.01, 500, n), rng.choice([1, 2, 4, 8, 16], n).astype(float),
            rng.choice([1, 2, 4, 8, 16], n).astype(float), 64, 500.0)
    whole = rate_match(*args)
    monkeypatch.setattr(ev, "RATE_MATCH_BLOCK", 7)
    for got, want in zip(rate_match(*args), whole):
        np.testing.assert_array_equal(got, want)
