"""The harness's reference transformer: MoE routing and MLA attention compute what they claim,
and allocate exactly the parameters and cache the planner counts for the same spec."""

import numpy as np
import pytest

from planner.harness import refmodels
from planner.harness.backends import NumpyOps, torch_or_none
from planner.harness.grids import layer_gemms
from planner.harness.transformer import Config, KVCache, Transformer


def small(kind):
    return refmodels.KINDS[kind](128)


def allocated_params(net: Transformer) -> int:
    """Elements of every weight the model holds (MLA's absorbed copies of w_kv_b are a layout, not parameters)."""
    total = net.tok_embeddings.size + net.output.size + net.norm.size
    for layer in net.layers:
        for name, w in vars(layer).items():
            if name in ("w_uk_t", "w_uv", "moe"):
                continue
            if name == "experts":
                total += sum(a.size + b.size for a, b in w)
            elif name == "shared":
                total += 0 if w is None else w[0].size + w[1].size
            else:
                total += w.size
    return total


@pytest.mark.parametrize("kind", ["dense", "moe", "mla"])
def test_parameters_and_cache_match_the_planners_count(kind):
    model = small(kind)
    cfg = Config.from_model(model)
    net = Transformer(cfg, NumpyOps(), seed=0)
    assert allocated_params(net) == model.total_params
    b, heads, length, d = cfg.cache_shape(1, 1)
    per_token = heads * d * (1 if cfg.mla else 2)  # MLA caches one latent; GQA caches K and V
    assert per_token == model.kv_elements_per_token_per_layer()
    # every projection the transformer runs is a GEMM shape the kernel grid measures
    shapes = {(n, k) for _, n, k in layer_gemms(model)}
    layer = net.layers[-1]
    held = [w for name, w in vars(layer).items() if name in ("wqkv", "wq_kv_a", "w_kv_b", "wo", "w13", "w2", "router")]
    if layer.moe:
        held += list(layer.experts[0]) + list(layer.shared)
    assert {(w.shape[1], w.shape[0]) for w in held} <= shapes


@pytest.mark.parametrize("kind", ["dense", "moe", "mla"])
def test_decode_over_the_cache_matches_a_longer_prefill(kind):
    """Decode (MLA: attention in the latent space with W_UK/W_UV absorbed) gives the logits of
    prefilling the same tokens (MLA: keys and values decompressed from the latent)."""
    ops = NumpyOps()
    cfg = Config.from_model(small(kind), layers=2)
    net = Transformer(cfg, ops, seed=1)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 10))
    full = net.forward(tokens, KVCache(ops, cfg, 2, 16), 0)
    cache = KVCache(ops, cfg, 2, 16, rng=np.random.default_rng(3))  # garbage beyond what is written must not matter
    net.forward(tokens[:, :7], cache, 0)
    for pos in range(7, 10):
        last = net.forward(tokens[:, pos:pos + 1], cache, pos)
    np.testing.assert_allclose(last, full, rtol=2e-4, atol=2e-4 * np.abs(full).max())


def test_moe_layer_equals_a_per_token_reference():
    """Router, top-k softmax over the chosen logits, experts run once over their tokens, plus the
    shared expert: the same as routing every token by hand."""
    ops = NumpyOps("fp64")
    model = small("moe")
    cfg = Config.from_model(model, layers=1)
    net = Transformer(cfg, ops, seed=2)
    layer = net.layers[0]
    x = np.random.default_rng(5).standard_normal((9, cfg.dim))

    def mlp(v, w13, w2):
        g, u = np.split(v @ w13, 2, axis=-1)
        return (g / (1 + np.exp(-g)) * u) @ w2

    expect = np.zeros_like(x)
    for i, v in enumerate(x):
        logits = v @ layer.router
        top = np.argsort(logits)[-cfg.top_k:]
        w = np.exp(logits[top] - logits[top].max())
        w /= w.sum()
        expect[i] = mlp(v, *layer.shared) + sum(wj * mlp(v, *layer.experts[e]) for wj, e in zip(w, top))
    np.testing.assert_allclose(net._moe(layer, x), expect, rtol=1e-10, atol=1e-10)


def test_reference_models_grow_with_the_memory_budget_and_fit_it():
    dims = (8, 1025, 256)
    small_set = refmodels.reference_models(200 << 20, 4, *dims)
    big_set = refmodels.reference_models(1600 << 20, 4, *dims)
    for a, b in zip(small_set, big_set):
        assert a.hidden_size < b.hidden_size
        assert refmodels.model_bytes(a, 4, *dims) <= 200 << 20
        assert refmodels.model_bytes(b, 4, *dims) <= 1600 << 20
    assert {m.id.split("-")[1] for m in small_set} == {"dense", "moe", "mla"}
    moe = big_set[1].moe
    assert moe.num_experts == 8 and moe.top_k == 2 and moe.num_shared_experts == 1


def test_written_spec_loads_back(tmp_path):
    from planner.specs.loader import get_model

    for m in (small("moe"), small("mla")):
        path = refmodels.write_model(m, tmp_path)
        assert get_model(str(path)) == m


@pytest.mark.skipif(torch_or_none() is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", ["moe", "mla"])
def test_torch_matches_numpy(kind):
    from planner.harness.backends import TorchOps

    cfg = Config.from_model(small(kind), layers=2)
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, size=(2, 9))
    outs = []
    for ops in (NumpyOps(), TorchOps("cpu", "fp32")):
        net = Transformer(cfg, ops, seed=5)
        t = tokens if ops.name == "numpy" else ops.torch.from_numpy(tokens)
        cache = KVCache(ops, cfg, 2, 16)
        with ops.inference():
            net.forward(t[:, :8], cache, 0)
            outs.append(ops.to_numpy(net.forward(t[:, 8:], cache, 8)))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3, rtol=1e-3)
