"""A small decoder-only transformer with random weights, for end-to-end timing.

In the spirit of gpt-fast: one readable module, no framework. The model is written once against
the ``ops`` interface of ``planner.harness.backends`` (numpy or torch), so both backends run the
same code. A layer is [RMSNorm, attention, residual, RMSNorm, feed-forward, residual]:

- attention: fused QKV projection, RoPE, causal GQA over a KV cache, O projection (Llama); or
  multi-head latent attention (DeepSeek-V2/V3 MLA): one latent per token is cached, prefill
  decompresses it into per-head keys and values, decode attends in the latent space with the
  up-projections absorbed into the query and the output (as serving engines run it);
- feed-forward: gated SiLU MLP; or a mixture of experts: a router, the top-k experts of each
  token (softmax over the chosen logits), each expert a gated SiLU MLP run once over the tokens
  routed to it, plus always-on shared experts.

The model ends in a final RMSNorm, lm_head over the full vocabulary for the last position of
each sequence, and argmax. Weights are seeded random values (never zeros), stored (in, out) so a
projection is ``x @ W``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from planner.specs.model import Model


def gated_mlp(ops, x, w13, w2, matmul=operator.matmul):
    """Gated SiLU MLP of x (tokens, dim): gate and up fused in one GEMM, then down. ``matmul`` is the GEMM (the
    harness's moe_loop rows pass one that returns a ready output, to time everything else the loop runs)."""
    gate_up = matmul(x, w13)
    n = gate_up.shape[1] // 2
    return matmul(ops.silu_mul(gate_up[:, :n], gate_up[:, n:]), w2)


def route(ops, logits, k: int):
    """(weights, chosen): the k experts of each token (tokens, k) and their softmax over the chosen logits."""
    weights, chosen = ops.topk(logits, k)
    return ops.softmax(weights, -1), chosen


def expert_loop(ops, x, weights, chosen, experts, out, matmul=operator.matmul):
    """Each expert ((w13, w2) of ``experts``) runs once over the tokens routed to it; its outputs, scaled by the
    router weight, are added into ``out`` at their tokens' rows."""
    for e, (w13, w2) in enumerate(experts):
        rows, slots = ops.where(chosen == e)
        if len(rows):
            out = ops.index_add(out, rows, gated_mlp(ops, x[rows], w13, w2, matmul) * weights[rows, slots][:, None])
    return out


@dataclass(frozen=True)
class Config:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float = 1e-5
    rope_base: float = 500_000.0
    # mixture of experts (0 experts: dense MLP)
    n_experts: int = 0
    top_k: int = 0
    expert_size: int = 0
    n_shared: int = 0
    shared_size: int = 0
    first_dense: int = 0  # leading layers with a dense MLP
    # multi-head latent attention (kv_lora_rank 0: GQA)
    kv_lora_rank: int = 0
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0

    @classmethod
    def from_model(cls, model: Model, layers: int | None = None) -> Config:
        kw = {}
        if model.moe:
            mo = model.moe
            kw.update(n_experts=mo.num_experts, top_k=mo.top_k, expert_size=mo.expert_intermediate_size,
                      n_shared=mo.num_shared_experts, shared_size=mo.shared_expert_intermediate_size or mo.expert_intermediate_size,
                      first_dense=mo.first_dense_layers)
        if model.attention.mla:
            ml = model.attention.mla
            kw.update(kv_lora_rank=ml.kv_lora_rank, qk_nope_dim=ml.qk_nope_head_dim, qk_rope_dim=ml.qk_rope_head_dim,
                      v_head_dim=ml.v_head_dim)
        return cls(vocab_size=model.vocab_size, dim=model.hidden_size, n_layers=layers or model.num_layers,
                   n_heads=model.num_heads, n_kv_heads=model.num_kv_heads, head_dim=model.head_dim,
                   intermediate_size=model.intermediate_size, **kw)

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def q_dim(self) -> int:
        return self.n_heads * (self.qk_nope_dim + self.qk_rope_dim if self.mla else self.head_dim)

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def o_in(self) -> int:  # width into the O projection
        return self.n_heads * (self.v_head_dim if self.mla else self.head_dim)

    def cache_shape(self, batch: int, length: int) -> tuple[int, int, int, int]:
        """K (and V) of one layer; MLA caches one latent (kv_lora_rank + rope dims) per token."""
        if self.mla:
            return batch, 1, length, self.kv_lora_rank + self.qk_rope_dim
        return batch, self.n_kv_heads, length, self.head_dim

    def layer_params(self) -> int:
        d = self.dim
        if self.mla:
            attn = d * (self.q_dim + self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank
            attn += self.kv_lora_rank * self.n_heads * (self.qk_nope_dim + self.v_head_dim) + self.o_in * d
        else:
            attn = d * (self.q_dim + 2 * self.kv_dim) + self.q_dim * d
        if self.n_experts:
            ffn = d * self.n_experts + 3 * d * (self.n_experts * self.expert_size + self.n_shared * self.shared_size)
        else:
            ffn = 3 * d * self.intermediate_size
        return attn + ffn + 2 * d


class KVCache:
    """Per layer K and V (GQA), or the latent (MLA: ``v`` is None), of ``Config.cache_shape``."""

    def __init__(self, ops, cfg: Config, max_batch: int, max_len: int, rng: np.random.Generator | None = None):
        shape = cfg.cache_shape(max_batch, max_len)
        make = (lambda: ops.empty(shape)) if rng is None else (lambda: ops.randn(shape, 1.0, rng))
        # empty: positions are written before they are read; random: stands in for tokens already cached
        self.k = [make() for _ in range(cfg.n_layers)]
        self.v = None if cfg.mla else [make() for _ in range(cfg.n_layers)]
        self.max_batch, self.max_len = max_batch, max_len


class Layer:
    """One decoder layer's weights (attributes by block; see Transformer.__init__)."""

    def __init__(self, **weights):
        self.__dict__.update(weights)


class Transformer:
    def __init__(self, cfg: Config, ops, seed: int = 0):
        self.cfg, self.ops = cfg, ops
        rng = np.random.default_rng(seed)
        d = cfg.dim

        def w(n_in, n_out):  # a projection, scaled so activations keep unit size
            return ops.randn((n_in, n_out), n_in**-0.5, rng)

        def norm(n=d):  # around 1, not exactly 1
            return ops.asarray(1.0 + 0.1 * rng.standard_normal(n))

        def mlp(width):  # gate and up fused, then down
            return w(d, 2 * width), w(width, d)

        self.tok_embeddings = ops.randn((cfg.vocab_size, d), 1.0, rng)
        self.layers = []
        for i in range(cfg.n_layers):
            layer = Layer(attention_norm=norm(), ffn_norm=norm(), moe=cfg.n_experts > 0 and i >= cfg.first_dense)
            if cfg.mla:
                h, r, nope, v = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_nope_dim, cfg.v_head_dim
                layer.wq_kv_a = w(d, cfg.q_dim + r + cfg.qk_rope_dim)  # q, and the latent with its rope key
                layer.kv_norm = norm(r)
                layer.w_kv_b = w(r, h * (nope + v))  # latent -> per-head k_nope and v (prefill)
                up = ops.to_numpy(layer.w_kv_b).reshape(r, h, nope + v)
                layer.w_uk_t = ops.asarray(np.ascontiguousarray(up[:, :, :nope].transpose(1, 2, 0)))  # (h, nope, r)
                layer.w_uv = ops.asarray(np.ascontiguousarray(up[:, :, nope:].transpose(1, 0, 2)))  # (h, r, v)
            else:
                layer.wqkv = w(d, cfg.q_dim + 2 * cfg.kv_dim)
            layer.wo = w(cfg.o_in, d)
            if layer.moe:
                layer.router = w(d, cfg.n_experts)
                layer.experts = [mlp(cfg.expert_size) for _ in range(cfg.n_experts)]
                layer.shared = mlp(cfg.n_shared * cfg.shared_size) if cfg.n_shared else None
            else:
                layer.w13, layer.w2 = mlp(cfg.intermediate_size)
            self.layers.append(layer)
        self.norm = norm()
        self.output = w(d, cfg.vocab_size)
        self._rope_cache: dict[int, tuple] = {}

    # ---- rotary position embedding (rotate-half form, as in Llama) ----
    def _rope(self, start: int, end: int, dim: int):
        cos, sin = self._rope_cache.get(dim, (None, None))
        if cos is None or end > cos.shape[0]:
            length = max(end, 2 * (0 if cos is None else cos.shape[0]), 256)
            half = dim // 2
            inv_freq = self.cfg.rope_base ** (-np.arange(half, dtype=np.float64) / half)
            angles = np.outer(np.arange(length, dtype=np.float64), inv_freq)
            cos, sin = self.ops.asarray(np.cos(angles)), self.ops.asarray(np.sin(angles))
            self._rope_cache[dim] = (cos, sin)
        return cos[start:end], sin[start:end]

    def _apply_rope(self, x, start: int):  # x (b, heads, t, dim): rotate its last dimension
        half = x.shape[-1] // 2
        cos, sin = self._rope(start, start + x.shape[2], x.shape[-1])
        x1, x2 = x[..., :half], x[..., half:]
        return self.ops.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    # ---- blocks ----
    @staticmethod
    def _proj(x, w):
        """(b, t, k) @ (k, n) as ONE GEMM over the b*t tokens, as serving engines run it (a stacked
        matmul would read the weight once per sequence)."""
        b, t, k = x.shape
        return (x.reshape(b * t, k) @ w).reshape(b, t, -1)

    @staticmethod
    def _heads(x, n: int):  # (b, t, n * d) -> (b, n, t, d)
        b, t, _ = x.shape
        return x.reshape(b, t, n, -1).swapaxes(1, 2)

    def _gqa(self, layer: Layer, h, cache: KVCache, i: int, start: int):
        cfg, ops = self.cfg, self.ops
        b, t, _ = h.shape
        qkv = self._proj(h, layer.wqkv)
        q = self._heads(qkv[..., : cfg.q_dim], cfg.n_heads)
        k = self._heads(qkv[..., cfg.q_dim: cfg.q_dim + cfg.kv_dim], cfg.n_kv_heads)
        v = self._heads(qkv[..., cfg.q_dim + cfg.kv_dim:], cfg.n_kv_heads)
        q, k = self._apply_rope(q, start), self._apply_rope(k, start)
        end = start + t
        cache.k[i][:b, :, start:end] = k
        cache.v[i][:b, :, start:end] = v
        return ops.attention(q, cache.k[i][:b, :, :end], cache.v[i][:b, :, :end], start)  # (b, heads, t, head_dim)

    def _mla(self, layer: Layer, h, cache: KVCache, i: int, start: int):
        cfg, ops = self.cfg, self.ops
        b, t, _ = h.shape
        nh, r, nope, rope = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_nope_dim, cfg.qk_rope_dim
        qa = self._proj(h, layer.wq_kv_a)
        q = self._heads(qa[..., : cfg.q_dim], nh)  # (b, nh, t, nope + rope)
        latent = ops.rmsnorm(qa[..., cfg.q_dim: cfg.q_dim + r], layer.kv_norm, cfg.norm_eps)
        k_rope = self._apply_rope(self._heads(qa[..., cfg.q_dim + r:], 1), start)  # one rope key shared by all heads
        q_nope, q_rope = q[..., :nope], self._apply_rope(q[..., nope:], start)
        end = start + t
        cache.k[i][:b, 0, start:end, :r] = latent
        cache.k[i][:b, :, start:end, r:] = k_rope
        c = cache.k[i][:b, :, :end]  # (b, 1, end, r + rope)
        scale = 1.0 / math.sqrt(nope + rope)
        if t == 1:  # decode: attend in the latent space (W_UK absorbed into q, W_UV applied to the output)
            q_lat = ops.cat([q_nope @ layer.w_uk_t, q_rope], -1)  # (b, nh, 1, r + rope)
            o_lat = ops.attention(q_lat, c, c[..., :r], start, scale=scale)  # (b, nh, 1, r)
            return o_lat @ layer.w_uv  # (b, nh, 1, v)
        # prefill: decompress the cached latents into per-head keys and values
        kv = self._heads(self._proj(c[:, 0, :, :r], layer.w_kv_b), nh)  # (b, nh, end, nope + v)
        k_rope_all = ops.broadcast_to(c[:, :, :, r:], (b, nh, end, rope))  # one rope key for every head
        k = ops.cat([kv[..., :nope], k_rope_all], -1)
        return ops.attention(ops.cat([q_nope, q_rope], -1), k, kv[..., nope:], start, scale=scale)

    def _attention(self, layer: Layer, h, cache: KVCache, i: int, start: int):
        b, t, _ = h.shape
        o = (self._mla if self.cfg.mla else self._gqa)(layer, h, cache, i, start)
        return self._proj(o.swapaxes(1, 2).reshape(b, t, self.cfg.o_in), layer.wo)

    def _mlp(self, x, w13, w2):  # x (tokens, dim)
        return gated_mlp(self.ops, x, w13, w2)

    def _moe(self, layer: Layer, x):
        """Router, top-k experts per token (softmax over the chosen logits), shared experts."""
        ops = self.ops
        weights, chosen = route(ops, x @ layer.router, self.cfg.top_k)
        out = self._mlp(x, *layer.shared) if layer.shared is not None else ops.zeros_like(x)
        return expert_loop(ops, x, weights, chosen, layer.experts, out)

    def _feed_forward(self, layer: Layer, h):
        b, t, d = h.shape
        x = h.reshape(b * t, d)
        y = self._moe(layer, x) if layer.moe else self._mlp(x, layer.w13, layer.w2)
        return y.reshape(b, t, d)

    # ---- model ----
    def forward(self, tokens, cache: KVCache, start: int = 0):
        """Logits (b, vocab) of the last position of each sequence; tokens (b, t) sit at
        positions start..start+t-1 and are appended to the cache."""
        ops, eps = self.ops, self.cfg.norm_eps
        t = tokens.shape[1]
        if start + t > cache.max_len or tokens.shape[0] > cache.max_batch:
            raise ValueError(f"cache of {cache.max_batch} x {cache.max_len} is too small for {tokens.shape[0]} x {start + t}")
        x = self.tok_embeddings[tokens]  # (b, t, dim)
        for i, layer in enumerate(self.layers):
            x = ops.add(x, self._attention(layer, ops.rmsnorm(x, layer.attention_norm, eps), cache, i, start))
            x = ops.add(x, self._feed_forward(layer, ops.rmsnorm(x, layer.ffn_norm, eps)))
        x = ops.rmsnorm(x[:, -1], self.norm, eps)
        return x @ self.output

    def step(self, tokens, cache: KVCache, start: int = 0):
        """One serving step (prefill or decode): the next token of each sequence, greedy."""
        return self.forward(tokens, cache, start).argmax(-1)
