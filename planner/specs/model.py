"""Model architecture specs and parameter counting from first principles."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLA(_Strict):
    """Multi-head latent attention (DeepSeek-V2/V3): KV cached as one latent per token."""

    q_lora_rank: int | None = Field(default=None, ge=1)  # None: plain q projection
    kv_lora_rank: int = Field(ge=1)
    qk_nope_head_dim: int = Field(ge=1)
    qk_rope_head_dim: int = Field(ge=1)
    v_head_dim: int = Field(ge=1)


class MoE(_Strict):
    num_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)
    expert_intermediate_size: int = Field(ge=1)
    num_shared_experts: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int | None = None  # defaults to expert size
    first_dense_layers: int = Field(default=0, ge=0)  # leading layers with a dense MLP
    expert_bias: bool = False  # biases on expert projections (gpt-oss)

    @model_validator(mode="after")
    def _check(self):
        if self.top_k > self.num_experts:
            raise ValueError("top_k exceeds num_experts")
        return self


class Attention(_Strict):
    kind: Literal["mha", "gqa", "mqa", "mla"]
    sliding_window: int | None = Field(default=None, ge=1)
    # layers that use the sliding window: "all", or every n-th pattern like gpt-oss ("alternate")
    sliding_layers: Literal["all", "alternate"] = "all"
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    # learned per-head attention-sink logits (gpt-oss): one scalar per query head per layer
    sinks: bool = False
    mla: MLA | None = None

    @model_validator(mode="after")
    def _check(self):
        if (self.kind == "mla") != (self.mla is not None):
            raise ValueError("attention kind 'mla' needs an 'mla' block, and only it")
        return self


class PublishedParams(_Strict):
    total: float = Field(gt=0)
    active: float | None = Field(default=None, gt=0)
    source: str
    # the publisher's active count leaves out the input-embedding table (a row lookup, not a
    # matmul), e.g. the gpt-oss model card; compare it with active_params - embedding_params()
    active_excludes_embedding: bool = False


class Model(_Strict):
    id: str
    name: str
    source: str  # where the architecture numbers come from (config.json of ...)
    # Hugging Face repo id of the checkpoint to serve (the instruct/chat variant where one exists);
    # deployment configs (planner.report.emit) load it. None: unknown, the model id stands in.
    hf_repo: str | None = None
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)  # dense MLP width
    ffn_gated: bool = True  # SwiGLU/GeGLU: three matrices; otherwise two
    mlp_bias: bool = False
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool = False
    lm_head_bias: bool = False
    max_context: int = Field(ge=1)
    parallel_attn_mlp: bool = False  # GPT-J / Falcon: attention and MLP read the same normed input
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norms_per_layer: int = Field(default=2, ge=0)
    attention: Attention
    moe: MoE | None = None
    published_params: PublishedParams | None = None
    notes: list[str] = []

    @model_validator(mode="after")
    def _check(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("first_dense_layers exceeds num_layers")
        return self

    # ---- structure -------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_moe_layers(self) -> int:
        return 0 if self.moe is None else self.num_layers - self.moe.first_dense_layers

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def q_dim(self) -> int:
        """Width of the attention output before o_proj (heads x value head dim)."""
        if self.attention.mla:
            return self.num_heads * self.attention.mla.v_head_dim
        return self.num_heads * self.head_dim

    # ---- parameter counts (elements) ----------------------------------------------
    def attention_params(self) -> int:
        h, a = self.hidden_size, self.attention
        if a.mla:
            m = a.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * self.num_heads * qk  # incl. q_a norm
            else:
                q = h * self.num_heads * qk
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank  # kv_a + its norm
            kv += m.kv_lora_rank * self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
            o = self.num_heads * m.v_head_dim * h
            return q + kv + o
        qd = self.num_heads * self.head_dim
        kvd = self.num_kv_heads * self.head_dim
        n = h * qd + 2 * h * kvd + qd * h
        if a.qkv_bias:
            n += qd + 2 * kvd
        if a.o_bias:
            n += h
        if a.qk_norm:
            n += 2 * self.head_dim
        if a.sinks:
            n += self.num_heads
        return n

    def mlp_params(self, width: int) -> int:
        h = self.hidden_size
        mats = 3 if self.ffn_gated else 2
        n = mats * h * width
        if self.mlp_bias:
            n += (2 if self.ffn_gated else 1) * width + h
        return n

    def expert_params(self) -> int:
        assert self.moe is not None
        n = self.mlp_params(self.moe.expert_intermediate_size)
        if self.moe.expert_bias and not self.mlp_bias:
            n += (2 if self.ffn_gated else 1) * self.moe.expert_intermediate_size + self.hidden_size
        return n

    def shared_expert_params(self) -> int:
        assert self.moe is not None
        if not self.moe.num_shared_experts:
            return 0
        width = self.moe.shared_expert_intermediate_size or self.moe.expert_intermediate_size
        return self.moe.num_shared_experts * self.mlp_params(width)

    def router_params(self) -> int:
        assert self.moe is not None
        return self.hidden_size * self.moe.num_experts + (self.moe.num_experts if self.moe.expert_bias else 0)

    def norm_params_per_layer(self) -> int:
        per = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        return self.norms_per_layer * per

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def lm_head_params(self) -> int:
        if self.tied_embeddings:
            return 0
        return self.vocab_size * self.hidden_size + (self.vocab_size if self.lm_head_bias else 0)

    def param_counts(self) -> dict[str, int]:
        """Elements by group; 'experts' are the routed experts (all of them)."""
        dense_mlp = self.mlp_params(self.intermediate_size) * self.num_dense_layers
        counts = {
            "embedding": self.embedding_params(),
            "lm_head": self.lm_head_params(),
            "final_norm": self.hidden_size * (2 if self.norm == "layernorm" else 1),
            "attention": self.attention_params() * self.num_layers,
            "norms": self.norm_params_per_layer() * self.num_layers,
            "dense_mlp": dense_mlp,
            "shared_experts": 0,
            "router": 0,
            "experts": 0,
        }
        if self.moe:
            counts["shared_experts"] = self.shared_expert_params() * self.num_moe_layers
            counts["router"] = self.router_params() * self.num_moe_layers
            counts["experts"] = self.expert_params() * self.moe.num_experts * self.num_moe_layers
        return counts

    @property
    def total_params(self) -> int:
        return int(sum(self.param_counts().values()))

    @property
    def active_params(self) -> int:
        """Parameters touched by one token (routed experts: top_k of them)."""
        c = self.param_counts()
        if not self.moe:
            return self.total_params
        active_experts = self.expert_params() * self.moe.top_k * self.num_moe_layers
        return int(sum(v for k, v in c.items() if k != "experts") + active_experts)

    # ---- KV cache ------------------------------------------------------------------
    def kv_elements_per_token_per_layer(self) -> int:
        """Elements cached per token per attention layer (K and V, or the MLA latent)."""
        a = self.attention
        if a.mla:
            return a.mla.kv_lora_rank + a.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def num_sliding_layers(self) -> int:
        if self.attention.sliding_window is None:
            return 0
        return self.num_layers if self.attention.sliding_layers == "all" else self.num_layers // 2
