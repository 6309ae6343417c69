"""A small decoder-only transformer (Llama layout) with random weights, for end-to-end timing.

In the spirit of gpt-fast: one readable module, no framework. The model is written once against
the ``ops`` interface of ``planner.harness.backends`` (numpy or torch), so both backends run the
same code: embedding lookup, ``n_layers`` x [RMSNorm, fused QKV projection, RoPE, causal GQA
attention over a KV cache, O projection, residual, RMSNorm, gated SiLU MLP, residual], final
RMSNorm, lm_head over the full vocabulary for the last position of each sequence, argmax.

Weights are seeded random values (never zeros), stored (in, out) so a projection is ``x @ W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.specs.model import Model


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

    @classmethod
    def from_model(cls, model: Model, layers: int | None = None) -> Config:
        return cls(vocab_size=model.vocab_size, dim=model.hidden_size, n_layers=layers or model.num_layers,
                   n_heads=model.num_heads, n_kv_heads=model.num_kv_heads, head_dim=model.head_dim,
                   intermediate_size=model.intermediate_size)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def layer_params(self) -> int:
        return self.dim * (self.q_dim + 2 * self.kv_dim) + self.q_dim * self.dim + 3 * self.dim * self.intermediate_size + 2 * self.dim


@dataclass
class Layer:
    attention_norm: object  # (dim,)
    wqkv: object  # (dim, q_dim + 2 kv_dim)
    wo: object  # (q_dim, dim)
    ffn_norm: object  # (dim,)
    w13: object  # (dim, 2 intermediate): gate then up
    w2: object  # (intermediate, dim)


class KVCache:
    """Per layer K and V of shape (max_batch, n_kv_heads, max_len, head_dim)."""

    def __init__(self, ops, cfg: Config, max_batch: int, max_len: int, rng: np.random.Generator | None = None):
        shape = (max_batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        if rng is None:  # empty: positions are written before they are read
            self.k = [ops.empty(shape) for _ in range(cfg.n_layers)]
            self.v = [ops.empty(shape) for _ in range(cfg.n_layers)]
        else:  # random contents: stands in for tokens already cached
            self.k = [ops.randn(shape, 1.0, rng) for _ in range(cfg.n_layers)]
            self.v = [ops.randn(shape, 1.0, rng) for _ in range(cfg.n_layers)]
        self.max_batch, self.max_len = max_batch, max_len


class Transformer:
    def __init__(self, cfg: Config, ops, seed: int = 0):
        self.cfg, self.ops = cfg, ops
        rng = np.random.default_rng(seed)
        d, n = cfg.dim, cfg.intermediate_size

        def norm_weight():  # around 1, not exactly 1
            return ops.asarray(1.0 + 0.1 * rng.standard_normal(d))

        self.tok_embeddings = ops.randn((cfg.vocab_size, d), 1.0, rng)
        self.layers = [
            Layer(attention_norm=norm_weight(),
                  wqkv=ops.randn((d, cfg.q_dim + 2 * cfg.kv_dim), d**-0.5, rng),
                  wo=ops.randn((cfg.q_dim, d), cfg.q_dim**-0.5, rng),
                  ffn_norm=norm_weight(),
                  w13=ops.randn((d, 2 * n), d**-0.5, rng),
                  w2=ops.randn((n, d), n**-0.5, rng))
            for _ in range(cfg.n_layers)
        ]
        self.norm = norm_weight()
        self.output = ops.randn((d, cfg.vocab_size), d**-0.5, rng)
        self._rope_len = 0

    # ---- rotary position embedding (rotate-half form, as in Llama) ----
    def _rope(self, start: int, end: int):
        if end > self._rope_len:
            length = max(end, 2 * self._rope_len, 256)
            half = self.cfg.head_dim // 2
            inv_freq = self.cfg.rope_base ** (-np.arange(half, dtype=np.float64) / half)
            angles = np.outer(np.arange(length, dtype=np.float64), inv_freq)
            self._cos, self._sin = self.ops.asarray(np.cos(angles)), self.ops.asarray(np.sin(angles))
            self._rope_len = length
        return self._cos[start:end], self._sin[start:end]

    def _apply_rope(self, x, cos, sin):  # x (b, heads, t, head_dim); cos, sin (t, head_dim / 2)
        half = self.cfg.head_dim // 2
        x1, x2 = x[..., :half], x[..., half:]
        return self.ops.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    # ---- blocks ----
    @staticmethod
    def _proj(x, w):
        """(b, t, k) @ (k, n) as ONE GEMM over the b*t tokens, as serving engines run it (a stacked
        matmul would read the weight once per sequence)."""
        b, t, k = x.shape
        return (x.reshape(b * t, k) @ w).reshape(b, t, -1)

    def _attention(self, layer: Layer, h, cache: KVCache, i: int, start: int, cos, sin):
        cfg, ops = self.cfg, self.ops
        b, t, _ = h.shape
        qkv = self._proj(h, layer.wqkv)
        q = qkv[..., : cfg.q_dim].reshape(b, t, cfg.n_heads, cfg.head_dim).swapaxes(1, 2)
        k = qkv[..., cfg.q_dim: cfg.q_dim + cfg.kv_dim].reshape(b, t, cfg.n_kv_heads, cfg.head_dim).swapaxes(1, 2)
        v = qkv[..., cfg.q_dim + cfg.kv_dim:].reshape(b, t, cfg.n_kv_heads, cfg.head_dim).swapaxes(1, 2)
        q, k = self._apply_rope(q, cos, sin), self._apply_rope(k, cos, sin)
        end = start + t
        cache.k[i][:b, :, start:end] = k
        cache.v[i][:b, :, start:end] = v
        o = ops.attention(q, cache.k[i][:b, :, :end], cache.v[i][:b, :, :end], start)  # (b, heads, t, head_dim)
        return self._proj(o.swapaxes(1, 2).reshape(b, t, cfg.q_dim), layer.wo)

    def _feed_forward(self, layer: Layer, h):
        gate_up = self._proj(h, layer.w13)
        n = self.cfg.intermediate_size
        return self._proj(self.ops.silu_mul(gate_up[..., :n], gate_up[..., n:]), layer.w2)

    # ---- model ----
    def forward(self, tokens, cache: KVCache, start: int = 0):
        """Logits (b, vocab) of the last position of each sequence; tokens (b, t) sit at
        positions start..start+t-1 and are appended to the cache."""
        ops, eps = self.ops, self.cfg.norm_eps
        t = tokens.shape[1]
        if start + t > cache.max_len or tokens.shape[0] > cache.max_batch:
            raise ValueError(f"cache of {cache.max_batch} x {cache.max_len} is too small for {tokens.shape[0]} x {start + t}")
        x = self.tok_embeddings[tokens]  # (b, t, dim)
        cos, sin = self._rope(start, start + t)
        for i, layer in enumerate(self.layers):
            x = ops.add(x, self._attention(layer, ops.rmsnorm(x, layer.attention_norm, eps), cache, i, start, cos, sin))
            x = ops.add(x, self._feed_forward(layer, ops.rmsnorm(x, layer.ffn_norm, eps)))
        x = ops.rmsnorm(x[:, -1], self.norm, eps)
        return x @ self.output

    def step(self, tokens, cache: KVCache, start: int = 0):
        """One serving step (prefill or decode): the next token of each sequence, greedy."""
        return self.forward(tokens, cache, start).argmax(-1)
