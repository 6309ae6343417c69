"""Model architecture specs and parameter counting from first principles."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.specs.hardware import Bytes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
    # MoE on every n-th layer (after the leading dense ones): layer i is MoE when (i + 1) % n == 0,
    # the others have a dense MLP of intermediate_size (Llama-4 Maverick's interleave_moe_layer_step 2:
    # layers 1, 3, 5, ... MoE; Qwen3-MoE's decoder_sparse_step uses the same rule)
    interleave_step: int = Field(default=1, ge=1)
    expert_bias: bool = False  # biases on expert projections (gpt-oss)
    # the coefficient of variation of the tokens the layer's experts receive; unset: the value measured on DeepSeek-R1
    # carried to this expert count (planner.costmodel.step.routing_skew); 0 prices perfectly even routing
    routing_skew: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _check(self):
        if self.top_k > self.num_experts:
            raise ValueError("top_k exceeds num_experts")
        return self


class SparseIndex(_Strict):
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5; config.json index_topk, index_n_heads, index_head_dim): a
    lightning indexer scores every cached token for each query (heads x head_dim FP8 dot products against one
    head_dim key per token, cached beside the MLA latent) and the attention reads only the top ``topk`` tokens."""

    topk: int = Field(ge=1)
    heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    # IndexShare (GLM-5.2; config.json index_topk_freq, index_skip_topk_offset): only some layers run an indexer and
    # cache its keys, the others reuse the top-k of the last layer that did. Layer i runs its own when
    # max(i - skip_topk_offset + 1, 0) % topk_freq == 0 (vLLM models/deepseek_v2.py, transformers' GlmMoeDsaConfig
    # indexer_types); the offset defaults to 2 where config.json leaves it out, as both do.
    topk_freq: int = Field(default=1, ge=1)
    skip_topk_offset: int = Field(default=2, ge=0)

    def computes(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) runs its own indexer (else it reuses the last top-k and caches no key)."""
        return max(layer - self.skip_topk_offset + 1, 0) % self.topk_freq == 0

    def key_bytes_per_token(self) -> float:
        """Cached indexer key per token per layer: head_dim FP8 values and an fp32 scale per 128 of them (vLLM's
        indexer cache: index_head_dim + index_head_dim // 128 * 4 bytes)."""
        return self.head_dim + -(-self.head_dim // 128) * 4.0

    def projection_params(self, hidden: int, q_lora_rank: int | None) -> int:
        """The indexer's three projections: query up-projection from the query latent (or the hidden state), key
        projection, per-head weight projection."""
        q_in = q_lora_rank or hidden
        return q_in * self.heads * self.head_dim + hidden * self.head_dim + hidden * self.heads

    def params(self, hidden: int, q_lora_rank: int | None) -> int:
        """The projections and the key's LayerNorm (weight and bias)."""
        return self.projection_params(hidden, q_lora_rank) + 2 * self.head_dim


class LinearAttention(_Strict):
    """Linear-attention layers between the full-attention ones: Gated DeltaNet (Qwen3-Next, Qwen3.5; config.json
    linear_* keys and full_attention_interval). Such a layer keeps a fixed recurrent state per sequence, value_heads x
    value_head_dim x key_head_dim elements, plus the last conv_kernel - 1 inputs of a short causal convolution over its
    q, k and v channels, in place of a KV cache that grows with the context."""

    kind: Literal["gated_deltanet"] = "gated_deltanet"
    full_every: int = Field(ge=2)  # layer i is full (softmax) attention when (i + 1) % full_every == 0
    key_heads: int = Field(ge=1)
    value_heads: int = Field(ge=1)
    key_head_dim: int = Field(ge=1)
    value_head_dim: int = Field(ge=1)
    conv_kernel: int = Field(default=4, ge=1)
    # the recurrent state's precision as the checkpoint asks for it (config.json mamba_ssm_dtype: Qwen3.5 float32,
    # which vLLM's Qwen3.5 config hook turns into --mamba-ssm-cache-dtype); the convolution window stays 16 bit
    state_dtype: Literal["bf16", "fp32"] = "bf16"

    @model_validator(mode="after")
    def _check(self):
        if self.value_heads % self.key_heads:
            raise ValueError("linear attention value_heads must be a multiple of key_heads")
        return self

    @property
    def conv_dim(self) -> int:
        """Channels of the causal convolution: q and k (key_heads x key_head_dim each) and v."""
        return 2 * self.key_heads * self.key_head_dim + self.value_heads * self.value_head_dim

    def in_proj_width(self) -> int:
        """Outputs of the input projection per token: q, k, v, the output gate z (value width) and per value head
        the write strength beta and the decay alpha."""
        return self.conv_dim + self.value_heads * self.value_head_dim + 2 * self.value_heads

    def params(self, hidden: int) -> int:
        """One layer: input projection, convolution taps, per-head decay parameters (A_log, dt_bias), the gated
        RMSNorm over each value head, output projection."""
        return (hidden * self.in_proj_width() + self.conv_dim * self.conv_kernel + 2 * self.value_heads
                + self.value_head_dim + self.value_heads * self.value_head_dim * hidden)

    @property
    def state_bytes(self) -> float:
        """Bytes per element of the recurrent state."""
        return 4.0 if self.state_dtype == "fp32" else 2.0


class Attention(_Strict):
    kind: Literal["mha", "gqa", "mqa", "mla"]
    # local attention, one of two kinds: a sliding window (a query sees the last `sliding_window`
    # keys), or chunks (Llama-4 attention_chunk_size: a query at position p sees only the keys of its
    # own aligned block, positions chunk_size * (p // chunk_size) .. p)
    sliding_window: int | None = Field(default=None, ge=1)
    chunk_size: int | None = Field(default=None, ge=1)
    # which layers are local: "all"; "alternate" (0, 2, 4, ... local, 1, 3, 5, ... full: gpt-oss's
    # layer_types, the same as global_every 2); or, with global_every n, layer i is full (global)
    # attention when (i + 1) % n == 0 and local otherwise (Llama-4: n = 4, 3 of 4 layers chunked)
    sliding_layers: Literal["all", "alternate"] = "all"
    global_every: int | None = Field(default=None, ge=2)
    # the full-attention layers use no rotary position embedding (Llama-4's NoPE layers)
    nope_global_layers: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    # learned per-head attention-sink logits (gpt-oss): one scalar per query head per layer
    sinks: bool = False
    # the query projection also emits a per-head output gate, sigmoid(gate) x attention output (Qwen3-Next's gated
    # attention: config.json q_proj of 2 x heads x head_dim)
    output_gate: bool = False
    mla: MLA | None = None
    # linear-attention layers between the full-attention ones (None: every layer is full attention)
    linear: LinearAttention | None = None
    # DeepSeek Sparse Attention: each query attends to the top-k tokens a lightning indexer picks (MLA models)
    index: SparseIndex | None = None

    @model_validator(mode="after")
    def _check(self):
        if (self.kind == "mla") != (self.mla is not None):
            raise ValueError("attention kind 'mla' needs an 'mla' block, and only it")
        if self.sliding_window and self.chunk_size:
            raise ValueError("a layer's local attention is a sliding window or chunks, not both")
        local = self.sliding_window or self.chunk_size
        if (self.global_every or self.sliding_layers != "all") and not local:
            raise ValueError("global_every / sliding_layers need a sliding_window or chunk_size")
        if self.sliding_layers == "alternate" and self.global_every not in (None, 2):
            raise ValueError("sliding_layers 'alternate' is global_every 2; give one of them")
        if self.nope_global_layers and not (self.global_every or self.sliding_layers == "alternate"):
            raise ValueError("nope_global_layers needs a pattern of global layers (global_every)")
        if self.index is not None and (self.mla is None or local):
            raise ValueError("a sparse-attention index (DeepSeek Sparse Attention) is modelled on MLA layers without local attention")
        if self.linear is not None and (local or self.mla is not None):
            raise ValueError("linear-attention layers beside local (sliding or chunked) or MLA attention are not modelled")
        return self

    @property
    def global_period(self) -> int | None:
        """n such that layer i is full attention when (i + 1) % n == 0; None: no local layers or all local."""
        if self.sliding_layers == "alternate":
            return 2
        return self.global_every

    @property
    def local_window(self) -> int | None:
        """Most keys a query on a local layer can see (the window, or the chunk)."""
        return self.sliding_window or self.chunk_size


class QuantizedOutProj(_Strict):
    """Plan formats in which the model's published MoE checkpoint stores the attention output projection (``wo`` /
    ``o_proj``) in the format itself, where the format's MoE recipe keeps the attention projections in 16 bit
    (quant.NVFP4_MOE_RECIPE). Recorded and said in ``estimate``'s note, not priced: the planner holds wo with the other
    projections (docs/accuracy.md, the weak spot on DeepSeek-R1's NVFP4 checkpoint, says why)."""

    formats: list[str] = Field(min_length=1)
    source: str

    @model_validator(mode="after")
    def _check(self):
        from planner.specs.quant import FORMATS

        odd = [f for f in self.formats if f not in FORMATS or not FORMATS[f].moe_mixers_16bit_source]
        if odd:
            raise ValueError(f"quantized_out_proj names {odd}: only formats whose MoE recipe keeps attention in 16 bit "
                             f"({', '.join(f for f, x in FORMATS.items() if x.moe_mixers_16bit_source)}) apply")
        return self


class NativeWeights(_Strict):
    """Precision of the released checkpoint's weights by group (format ids of planner.specs.quant)."""

    experts: str = "bf16"  # routed experts
    dense: str = "bf16"  # attention, dense MLP, shared experts, router
    embeddings: str = "bf16"  # input embedding and lm_head
    # block-scaled weights (quantization_config weight_block_size: one scale per block x block tile): their kernels take
    # activations quantized per token and per block of channels at run time, a kernel of its own before each GEMM
    scale_block: int | None = Field(default=None, ge=1)
    checkpoint: Bytes | None = None  # the published size of the checkpoint, with its source
    source: str

    @field_validator("experts", "dense", "embeddings")
    @classmethod
    def _known(cls, v: str) -> str:
        from planner.specs.quant import FORMATS

        if v not in FORMATS:
            raise ValueError(f"unknown weight format {v!r} (known: {', '.join(FORMATS)})")
        return v


class VisionEncoder(_Strict):
    """A ViT image encoder with its adapter and projector (Llama-4's layout), for weight accounting.

    Its weights sit in device memory beside the text model's; a text token never runs through them.
    """

    kind: Literal["llama4"] = "llama4"
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)
    patch_size: int = Field(ge=1)
    image_size: int = Field(ge=1)
    num_channels: int = Field(default=3, ge=1)
    projector_input_dim: int = Field(ge=1)  # pixel-shuffle MLP: intermediate_size -> this
    projector_output_dim: int = Field(ge=1)  # ... -> this
    output_dim: int = Field(ge=1)  # vision_output_dim: input of the projector into the text model

    def params(self, text_hidden: int) -> int:
        h, f = self.hidden_size, self.intermediate_size
        patches = (self.image_size // self.patch_size) ** 2 + 1  # + the class token
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h  # biased q,k,v,o; fc1, fc2; 2 LayerNorms
        embed = self.num_channels * self.patch_size**2 * h + h + patches * h  # unfold linear, class, positions
        ends = 2 * 2 * h  # layernorm_pre, layernorm_post
        adapter = f * self.projector_input_dim + self.projector_input_dim * self.projector_output_dim
        projector = self.output_dim * text_hidden
        return self.num_layers * layer + embed + ends + adapter + projector


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
    aliases: list[str] = []  # other ids that name this model (planner.specs.loader resolves them)
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
    vision: VisionEncoder | None = None  # image encoder shipped in the checkpoint (Llama-4)
    native_weights: NativeWeights | None = None  # None: every weight in bf16 as released
    # formats whose published MoE checkpoint also quantizes the attention output projection (recorded, not priced)
    quantized_out_proj: QuantizedOutProj | None = None
    mtp_layers: int = Field(default=0, ge=0)  # multi-token-prediction heads shipped (config.json num_nextn_predict_layers)
    published_params: PublishedParams | None = None
    notes: list[str] = []

    @model_validator(mode="after")
    def _check(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("first_dense_layers exceeds num_layers")
        if self.quantized_out_proj is not None and self.moe is None:
            raise ValueError("quantized_out_proj describes a MoE checkpoint's attention; this model is dense")
        return self

    # ---- structure -------------------------------------------------------------
    def released_weights(self) -> str | None:
        """The format the released checkpoint stores its weights in (the routed experts' for a MoE), None for 16 bit:
        the reference the accuracy model measures a plan's weights against (planner.cap.accuracy)."""
        nw = self.native_weights
        if nw is None:
            return None
        return nw.experts if self.moe is not None else nw.dense

    def stored_formats(self, weights: str) -> tuple[str, str]:
        """(attention projections, dense MLP and shared experts): the formats a checkpoint served in ``weights`` stores
        those layers in. A MoE checkpoint released in two precisions (gpt-oss, Kimi K2) and served as released keeps
        them in its dense format; a MoE checkpoint in a format whose MoE recipe keeps attention in 16 bit (NVFP4:
        quant.NVFP4_MOE_RECIPE; MXFP4: quant.MXFP4_MOE_RECIPE) holds its attention in bf16; anything else holds every
        linear layer in ``weights``."""
        from planner.specs.quant import get_format

        nw = self.native_weights
        if self.moe is not None and nw is not None and nw.experts != nw.dense and weights == nw.experts:
            return nw.dense, nw.dense
        if self.moe is not None and get_format(weights).moe_mixers_16bit_source:
            return "bf16", weights
        return weights, weights

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def moe_layer_indices(self) -> list[int]:
        """Layers whose MLP is the routed-expert block (0-based)."""
        if self.moe is None:
            return []
        step = self.moe.interleave_step
        return [i for i in range(self.moe.first_dense_layers, self.num_layers) if (i + 1) % step == 0]

    def linear_layer_indices(self) -> list[int]:
        """Layers with linear attention (Gated DeltaNet), 0-based: every layer but each full_every-th."""
        lin = self.attention.linear
        return [] if lin is None else self._all_but_every(lin.full_every)

    @property
    def num_linear_layers(self) -> int:
        return len(self.linear_layer_indices())

    def indexer_layer_indices(self) -> list[int]:
        """Layers that run a sparse-attention indexer of their own, 0-based (every MLA layer unless IndexShare)."""
        ix = self.attention.index
        return [] if ix is None else [i for i in range(self.num_layers) if ix.computes(i)]

    @property
    def num_indexer_layers(self) -> int:
        return len(self.indexer_layer_indices())

    def indexer_params(self) -> int:
        """Every layer's sparse-attention indexer (projections and key LayerNorm), over the layers that have one."""
        ix = self.attention.index
        return 0 if ix is None else ix.params(self.hidden_size, self.attention.mla.q_lora_rank) * self.num_indexer_layers

    @property
    def num_attention_layers(self) -> int:
        """Layers with softmax attention over a KV cache (all but the linear-attention ones)."""
        return self.num_layers - self.num_linear_layers

    def local_layer_indices(self) -> list[int]:
        """Layers with local attention (sliding window or chunk), 0-based."""
        a = self.attention
        return [] if a.local_window is None else self._all_but_every(a.global_period)

    def _all_but_every(self, n: int | None) -> list[int]:
        """Layers i with (i + 1) % n != 0 (every layer when n is None), 0-based: the pattern local and linear
        layers share, the n-th ones being full attention."""
        return [i for i in range(self.num_layers) if n is None or (i + 1) % n != 0]

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_indices())

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
        """One full-attention layer (linear-attention layers: LinearAttention.params)."""
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
            return q + kv + o  # a sparse-attention indexer's projections: indexer_params (not on every layer)
        qd = self.num_heads * self.head_dim
        kvd = self.num_kv_heads * self.head_dim
        n = h * qd + 2 * h * kvd + qd * h
        if a.output_gate:
            n += h * qd
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

    def vision_params(self) -> int:
        return 0 if self.vision is None else self.vision.params(self.hidden_size)

    def param_counts(self) -> dict[str, int]:
        """Elements by group; 'experts' are the routed experts (all of them); 'vision' the image encoder."""
        dense_mlp = self.mlp_params(self.intermediate_size) * self.num_dense_layers
        counts = {
            "embedding": self.embedding_params(),
            "lm_head": self.lm_head_params(),
            "final_norm": self.hidden_size * (2 if self.norm == "layernorm" else 1),
            "attention": self.attention_params() * self.num_attention_layers + self.indexer_params()
            + (self.attention.linear.params(self.hidden_size) * self.num_linear_layers if self.attention.linear else 0),
            "norms": self.norm_params_per_layer() * self.num_layers,
            "dense_mlp": dense_mlp,
            "shared_experts": 0,
            "router": 0,
            "experts": 0,
            "vision": self.vision_params(),
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
        """Parameters touched by one text token (routed experts: top_k of them; no image encoder)."""
        c = self.param_counts()
        active_experts = self.expert_params() * self.moe.top_k * self.num_moe_layers if self.moe else 0
        return int(sum(v for k, v in c.items() if k not in ("experts", "vision")) + active_experts)

    def native_weight_bytes(self) -> float:
        """Bytes of the released checkpoint's weights, from native_weights (scale overhead included)."""
        from planner.specs.quant import get_format

        nw = self.native_weights or NativeWeights(source="bf16 default")
        c = self.param_counts()
        b = {g: get_format(getattr(nw, g)).bytes for g in ("experts", "dense", "embeddings")}
        expert_bias = 0
        if self.moe and self.moe.expert_bias:  # biases stay 16 bit beside block-quantized expert matrices
            expert_bias = ((2 if self.ffn_gated else 1) * self.moe.expert_intermediate_size + self.hidden_size) \
                * self.moe.num_experts * self.num_moe_layers
        experts = (c["experts"] - expert_bias) * b["experts"] + expert_bias * 2.0
        dense = (c["attention"] + c["dense_mlp"] + c["shared_experts"]) * b["dense"]
        small = (c["norms"] + c["final_norm"] + c["router"] + c["vision"]) * 2.0
        return float(experts + dense + (c["embedding"] + c["lm_head"]) * b["embeddings"] + small)

    # ---- KV cache ------------------------------------------------------------------
    def kv_elements_per_token_per_layer(self) -> int:
        """Elements cached per token per attention layer (K and V, or the MLA latent)."""
        a = self.attention
        if a.mla:
            return a.mla.kv_lora_rank + a.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def num_sliding_layers(self) -> int:
        """Layers with a sliding window (chunked layers are counted by num_chunked_layers)."""
        return len(self.local_layer_indices()) if self.attention.sliding_window else 0

    def num_chunked_layers(self) -> int:
        return len(self.local_layer_indices()) if self.attention.chunk_size else 0
