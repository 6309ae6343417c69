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
