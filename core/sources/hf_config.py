"""Transformer graphs from a Hugging Face ``config.json`` and a workload (train step, prefill, decode).

Supported: dense decoder-only models with grouped-query attention (Llama, Qwen, Mistral and any
``model_type`` with the standard fields), mixture-of-experts (Mixtral top-k, DeepSeek routed + shared
experts with ``first_k_dense_replace``, Qwen-MoE), multi-head latent attention (DeepSeek-V3, Kimi-K2) and
FlexGen-era decoders (OPT, GPT-2, GPT-NeoX: LayerNorm, biases, learned positions, a two-matrix MLP).
What each op saves for its backward follows PyTorch's autograd (docs/sources.md, "Activation accounting").

Per layer the graph holds the main ops — input norm, QKV projection, attention, output projection (with
the residual add), post-attention norm, MLP or router + experts (+ shared experts) — plus embedding, final
norm, LM head and (training) the loss, each with FLOPs and bytes accessed so op time follows the chosen
hardware's roofline. Parameter counts are computed from the config (see :func:`count_params`); the graph's
weight bytes equal ``params_total × dtype`` by construction.

Approximations (documented in docs/sources.md): fused ops keep their internal intermediates either as a
``saved`` output (training, read by the backward) or as a transient ``workspace`` output (inference);
for MoE inference the experts a step touches are the expected number of distinct experts under uniform
routing, the rest of a layer's experts being one stored-but-unread tensor.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InputError
from core.graph import MAX_TENSOR_BYTES, Graph, Op, Tensor
from core.sources.training import FwdOp, OptimizerGroup, synthesize_training

__all__ = [
    "ParamCount",
    "ModelSpec",
    "model_spec",
    "count_params",
    "kv_bytes_per_token",
    "graph_from_hf_config",
    "expected_active_experts",
    "prefill_flops",
    "decode_flops",
]

#: Model types that are not decoder-only transformers of the kinds above: refuse them by name.
UNSUPPORTED_MODEL_TYPES = frozenset({
    "t5", "mt5", "bart", "mbart", "pegasus", "marian", "whisper", "bert", "roberta", "distilbert", "albert",
    "electra", "deberta", "deberta-v2", "mamba", "mamba2", "rwkv", "vit", "clip", "wav2vec2", "encoder-decoder",
})
#: Decoder-only families whose layout differs in ways this generator does not model: refused by name with
#: what is missing, instead of a misleading "missing field" message.
UNSUPPORTED_DECODERS = {
    "bloom": "ALiBi position bias and the fused query_key_value layout with `n_layer`/`n_head` fields",
    "falcon": "parallel attention + MLP sharing one LayerNorm and multi-query `num_kv_heads`",
    "gptj": "parallel attention + MLP and partial rotary (`rotary_dim`) with `n_embd`/`n_layer` fields",
    "codegen": "GPT-J's parallel block with a fused qkv_proj and `n_embd`/`n_layer` fields",
    "mpt": "ALiBi and `d_model`/`n_layers`/`expansion_ratio` fields",
    "gpt_bigcode": "multi-query attention with `n_embd`/`n_layer` fields",
}
#: Dialects of FlexGen-era decoders: LayerNorm with bias, biases on every linear layer, a two-matrix MLP.
_OPT_ACTIVATIONS = {"relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "silu"}
MAX_LAYERS = 1000
MAX_TOKENS = 2**24


@dataclass(frozen=True)
class ParamCount:
    """Parameters by part. ``active`` counts what one token touches: every dense part, embedding and head
    included, plus ``top_k`` routed experts and the shared experts in each MoE layer."""

    total: int
    active: int
    embedding: int
    head: int
    attention: int
    dense_mlp: int
    routed_experts: int
    shared_experts: int
    router: int
    norms: int

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class MLASpec:
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int
    expert_intermediate: int
    shared_intermediate: int
    shared_gate: bool
    router_bias: bool
    moe_layers: tuple[bool, ...]


@dataclass(frozen=True)
class ModelSpec:
    """The fields of a config that sizes depend on, read and checked once."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int
    tie_embeddings: bool
    qkv_bias: bool
    weight_bytes: int
    mla: MLASpec | None
    moe: MoESpec | None
    #: "rms" (Llama: weight only, fp32 upcast inside) or "layer" (OPT, GPT-2, GPT-NeoX: weight + bias).
    norm: str = "rms"
    #: SwiGLU (gate, up, down) or a two-matrix MLP (fc1, activation, fc2) as in OPT and GPT-2.
    gated_mlp: bool = True
    #: Biases on the output projection and the MLP (OPT, GPT-2, GPT-NeoX); qkv biases are ``qkv_bias``.
    linear_bias: bool = False
    #: Rows of a learned position-embedding table (OPT: max_position_embeddings + 2; GPT-2: n_positions).
    learned_positions: int = 0
    #: OPT's ``word_embed_proj_dim`` when it differs from ``hidden`` (project_in / project_out), else 0.
    embed_proj_dim: int = 0
    activation: str = "silu"

    @property
    def qk_head_dim(self) -> int:
        return self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim if self.mla else self.head_dim

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    def is_moe_layer(self, i: int) -> bool:
        return self.moe is not None and self.moe.moe_layers[i]


# ------------------------------------------------------------------------------------------- config reading


class _Reader:
    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        self.config = config
        self.source = source

    def error(self, problem: str, key: str | None) -> InputError:
        return InputError(problem, source=self.source, field=key)

    def int(self, key: str, default: int | None = None, *, minimum: int = 1, maximum: int = 10**7,
            aliases: tuple[str, ...] = ()) -> int:
        for name in (key, *aliases):
            if name in self.config and self.config[name] is not None:
                key = name
                break
        else:
            if default is None:
                raise self.error(f"missing required field '{key}'", key)
            return default
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise self.error(f"expected a whole number, got {value!r}", key)
        number = int(value)
        if number < minimum:
            raise self.error(f"must be >= {minimum}, got {number}", key)
        if number > maximum:
            raise self.error(f"{number} is implausibly large (limit {maximum})", key)
        return number

    def opt_int(self, key: str, *, minimum: builtins.int = 1) -> builtins.int | None:
        if self.config.get(key) is None:
            return None
        return self.int(key, minimum=minimum)

    def bool(self, key: str, default: bool) -> bool:
        value = self.config.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {value!r}", key)
        return value


def _weight_bytes(config: Mapping[str, Any]) -> int:
    quant = config.get("quantization_config")
    if isinstance(quant, Mapping) and str(quant.get("quant_method", "")).lower() == "fp8":
        return 1
    return 4 if str(config.get("torch_dtype", "")).lower() in ("float32", "fp32") else 2


def model_spec(config: Mapping[str, Any], *, source: str = "config.json") -> ModelSpec:
    """Read and check the fields that matter; errors name the file and the field."""
    if not isinstance(config, Mapping):
        raise InputError(f"expected a JSON object, got {type(config).__name__}", source=source)
    fmt = config.get("format")
    if isinstance(fmt, str) and fmt.startswith("tierplan-"):
        raise InputError(f"this is a '{fmt}' file, not a Hugging Face config.json", source=source, field="format")
    if "hidden_size" not in config and isinstance(config.get("text_config"), Mapping):
        return model_spec(config["text_config"], source=f"{source}: text_config")
    model_type = config.get("model_type", "")
    if not isinstance(model_type, str):
        raise InputError(f"expected a string, got {model_type!r}", source=source, field="model_type")
    if model_type.lower() in UNSUPPORTED_DECODERS:
        raise InputError(
            f"model_type '{model_type}' is not supported: {UNSUPPORTED_DECODERS[model_type.lower()]} are not "
            "modelled; supported: Llama-style, MoE, MLA, OPT, GPT-2 and GPT-NeoX configs",
            source=source, field="model_type",
        )
    if model_type.lower() in ("opt", "gpt2", "gpt_neox"):
        return _classic_spec(config, model_type.lower(), source)
    if model_type.lower() in UNSUPPORTED_MODEL_TYPES or config.get("is_encoder_decoder") is True:
        raise InputError(
            f"model_type '{model_type}' is not a decoder-only transformer; supported: dense (Llama, Qwen, Mistral "
            "and configs with the same fields), MoE (Mixtral, DeepSeek, Qwen-MoE) and MLA (DeepSeek-V3, Kimi-K2)",
            source=source, field="model_type",
        )
    r = _Reader(config, source)
    hidden = r.int("hidden_size", maximum=10**6)
    layers = r.int("num_hidden_layers", maximum=MAX_LAYERS)
    heads = r.int("num_attention_heads", maximum=10**5)
    kv_heads = r.int("num_key_value_heads", heads, maximum=10**5)
    if heads % kv_heads:
        raise r.error(f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})",
                      "num_key_value_heads")
    if "head_dim" in config and config["head_dim"] is not None:
        head_dim = r.int("head_dim", maximum=10**5)
    else:
        if hidden % heads:
            raise r.error(f"hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}); "
                          "give head_dim", "head_dim")
        head_dim = hidden // heads
    vocab = r.int("vocab_size", maximum=10**8)
    tie = r.bool("tie_word_embeddings", False)
    qkv_bias = r.bool("attention_bias", model_type.startswith("qwen2"))

    mla = None
    if config.get("kv_lora_rank") is not None:
        mla = MLASpec(
            q_lora_rank=r.opt_int("q_lora_rank"),
            kv_lora_rank=r.int("kv_lora_rank", maximum=10**6),
            qk_rope_head_dim=r.int("qk_rope_head_dim", maximum=10**5),
            qk_nope_head_dim=r.int("qk_nope_head_dim", maximum=10**5),
            v_head_dim=r.int("v_head_dim", maximum=10**5),
        )

    moe = _moe_spec(r, layers)
    needs_dense_mlp = moe is None or not all(moe.moe_layers)
    intermediate = r.int("intermediate_size", maximum=10**7) if needs_dense_mlp else r.int("intermediate_size", 0, minimum=0)
    return ModelSpec(model_type or "unknown", hidden, layers, heads, kv_heads, head_dim, vocab, intermediate,
                     tie, qkv_bias, _weight_bytes(config), mla, moe)


def _classic_spec(config: Mapping[str, Any], model_type: str, source: str) -> ModelSpec:
    """OPT, GPT-2 and GPT-NeoX: LayerNorm, biases everywhere, a two-matrix MLP; OPT and GPT-2 learn their
    positions, GPT-NeoX rotates them. Field names differ (``ffn_dim``, ``n_embd``, ``n_inner`` …)."""
    r = _Reader(config, source)
    hidden = r.int("hidden_size", maximum=10**6, aliases=("n_embd",))
    layers = r.int("num_hidden_layers", maximum=MAX_LAYERS, aliases=("n_layer",))
    heads = r.int("num_attention_heads", maximum=10**5, aliases=("n_head",))
    if hidden % heads:
        raise r.error(f"hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})", "num_attention_heads")
    vocab = r.int("vocab_size", maximum=10**8)
    if model_type == "opt":
        inter = r.int("ffn_dim", maximum=10**7, aliases=("intermediate_size",))
        if config.get("do_layer_norm_before") is False:
            raise r.error("post-LayerNorm OPT (do_layer_norm_before: false, OPT-350m) is not modelled", "do_layer_norm_before")
        proj = r.int("word_embed_proj_dim", hidden, maximum=10**6)
        positions = r.int("max_position_embeddings", 2048, maximum=10**7) + 2  # HF's OPT offset of 2
        act = config.get("activation_function", "relu")
        tie = r.bool("tie_word_embeddings", True)
    elif model_type == "gpt2":
        inter = r.int("n_inner", 4 * hidden, maximum=10**7)
        proj = hidden
        positions = r.int("n_positions", 1024, maximum=10**7, aliases=("max_position_embeddings",))
        act = config.get("activation_function", "gelu_new")
        tie = r.bool("tie_word_embeddings", True)
    else:  # gpt_neox
        inter = r.int("intermediate_size", 4 * hidden, maximum=10**7)
        proj, positions = hidden, 0
        act = config.get("hidden_act", "gelu")
        tie = r.bool("tie_word_embeddings", False)
    if not isinstance(act, str) or act not in _OPT_ACTIVATIONS:
        raise r.error(f"activation {act!r} is not modelled; expected one of {', '.join(sorted(_OPT_ACTIVATIONS))}",
                      "activation_function" if model_type != "gpt_neox" else "hidden_act")
    return ModelSpec(model_type, hidden, layers, heads, heads, hidden // heads, vocab, inter, tie, True,
                     _weight_bytes(config), None, None, norm="layer", gated_mlp=False, linear_bias=True,
                     learned_positions=positions, embed_proj_dim=proj if proj != hidden else 0, activation=act)


def _moe_spec(r: _Reader, layers: int) -> MoESpec | None:
    c = r.config
    if c.get("n_routed_experts"):  # DeepSeek V2/V3, Kimi-K2
        experts = r.int("n_routed_experts", maximum=10**5)
        first_dense = r.int("first_k_dense_replace", 0, minimum=0, maximum=MAX_LAYERS)
        freq = r.int("moe_layer_freq", 1)
        moe_layers = tuple(i >= first_dense and i % freq == 0 for i in range(layers))
        moe_inter = r.int("moe_intermediate_size", maximum=10**7)
        shared = r.int("n_shared_experts", 0, minimum=0, maximum=10**4) * moe_inter
        return MoESpec(experts, r.int("num_experts_per_tok", maximum=experts), moe_inter, shared, False,
                       c.get("topk_method") == "noaux_tc", moe_layers)
    if c.get("num_local_experts"):  # Mixtral
        experts = r.int("num_local_experts", maximum=10**5)
        return MoESpec(experts, r.int("num_experts_per_tok", maximum=experts), r.int("intermediate_size", maximum=10**7),
                       0, False, False, (True,) * layers)
    if c.get("num_experts"):  # Qwen2-MoE, Qwen3-MoE
        experts = r.int("num_experts", maximum=10**5)
        step = r.int("decoder_sparse_step", 1)
        only_dense = c.get("mlp_only_layers") or []
        if not isinstance(only_dense, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in only_dense):
            raise r.error(f"expected a list of layer indices, got {only_dense!r}", "mlp_only_layers")
        moe_layers = tuple(i not in only_dense and (i + 1) % step == 0 for i in range(layers))
        shared = r.int("shared_expert_intermediate_size", 0, minimum=0, maximum=10**7)
        return MoESpec(experts, r.int("num_experts_per_tok", maximum=experts), r.int("moe_intermediate_size", maximum=10**7),
                       shared, shared > 0, False, moe_layers)
    return None


# ---------------------------------------------------------------------------------------------- counting


def _attention_params(s: ModelSpec) -> int:
    h = s.hidden
    if s.mla:
        m = s.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * s.heads * qk
        else:
            q = h * s.heads * qk
        kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank + m.kv_lora_rank * s.heads * (m.qk_nope_head_dim + m.v_head_dim)
        return q + kv + s.heads * m.v_head_dim * h
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    bias = q + 2 * kv if s.qkv_bias else 0
    return h * (q + 2 * kv) + bias + _o_proj_params(s)


def _o_proj_params(s: ModelSpec) -> int:
    return s.heads * s.v_head_dim * s.hidden + (s.hidden if s.linear_bias else 0)


def _dense_mlp_params(s: ModelSpec) -> int:
    h, inter = s.hidden, s.intermediate
    if s.gated_mlp:
        return 3 * h * inter + (2 * inter + h if s.linear_bias else 0)
    return 2 * h * inter + (inter + h if s.linear_bias else 0)


def _norm_params(s: ModelSpec) -> int:
    return (2 if s.norm == "layer" else 1) * s.hidden


def _embedding_params(s: ModelSpec) -> int:
    """Token table (``vocab × word_embed_proj_dim``), learned positions and OPT's project_in/out."""
    width = s.embed_proj_dim or s.hidden
    proj = 2 * width * s.hidden if s.embed_proj_dim else 0
    return s.vocab * width + s.learned_positions * s.hidden + proj


def _qkv_params(s: ModelSpec) -> int:
    return _attention_params(s) - _o_proj_params(s)


def _expert_params(s: ModelSpec) -> int:
    assert s.moe is not None
    return 3 * s.hidden * s.moe.expert_intermediate


def _shared_params(s: ModelSpec) -> int:
    assert s.moe is not None
    return 3 * s.hidden * s.moe.shared_intermediate + (s.hidden if s.moe.shared_gate else 0)


def _router_params(s: ModelSpec) -> int:
    assert s.moe is not None
    return s.hidden * s.moe.num_experts + (s.moe.num_experts if s.moe.router_bias else 0)


def count_params(config: Mapping[str, Any] | ModelSpec, *, source: str = "config.json") -> ParamCount:
    """Total and per-token active parameters from the config (DeepSeek's MTP module is not counted)."""
    s = config if isinstance(config, ModelSpec) else model_spec(config, source=source)
    h = s.hidden
    embedding = _embedding_params(s)
    head = 0 if s.tie_embeddings else s.vocab * (s.embed_proj_dim or h)
    attention = s.layers * _attention_params(s)
    norms = (2 * s.layers + 1) * _norm_params(s)
    dense_mlp = routed = shared = router = active_routed = 0
    for i in range(s.layers):
        if s.is_moe_layer(i):
            assert s.moe is not None
            routed += s.moe.num_experts * _expert_params(s)
            active_routed += s.moe.top_k * _expert_params(s)
            shared += _shared_params(s)
            router += _router_params(s)
        else:
            dense_mlp += _dense_mlp_params(s)
    common = embedding + head + attention + norms + dense_mlp + shared + router
    return ParamCount(common + routed, common + active_routed, embedding, head, attention, dense_mlp, routed,
                      shared, router, norms)


def kv_bytes_per_token(config: Mapping[str, Any] | ModelSpec, dtype_bytes: int = 2) -> int:
    """KV-cache bytes one token adds: ``2·layers·kv_heads·head_dim·dtype``, or for MLA
    ``layers·(kv_lora_rank + qk_rope_head_dim)·dtype`` (the compressed latent plus the shared RoPE key)."""
    s = config if isinstance(config, ModelSpec) else model_spec(config)
    return s.layers * _kv_per_token_layer(s) * dtype_bytes


def _kv_per_token_layer(s: ModelSpec) -> int:
    if s.mla:
        return s.mla.kv_lora_rank + s.mla.qk_rope_head_dim
    return 2 * s.kv_heads * s.head_dim


def expected_active_experts(num_experts: int, top_k: int, tokens: int) -> int:
    """Distinct experts ``tokens`` tokens touch when each picks ``top_k`` of ``num_experts`` uniformly:
    ``E·(1 − (1 − k/E)^T)``, rounded up and at least ``top_k``."""
    if tokens <= 0:
        return 0
    expected = num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)
    return max(top_k, min(num_experts, math.ceil(expected - 1e-9)))


def _linear_flops(s: ModelSpec, tokens: int, head_tokens: int) -> float:
    """Every op but attention for ``tokens`` tokens of one sequence, as :func:`_build` counts them."""
    h = s.hidden
    per_layer = 0.0
    for i in range(s.layers):
        f = 2 * 5.0 * tokens * h + 2.0 * tokens * _qkv_params(s)
        f += 2.0 * tokens * s.heads * s.v_head_dim * h + tokens * h
        if s.is_moe_layer(i):
            assert s.moe is not None
            f += 2.0 * tokens * h * s.moe.num_experts
            if s.moe.shared_intermediate:
                f += 2.0 * tokens * _shared_params(s)
            routed = tokens * s.moe.top_k
            f += 2.0 * routed * _expert_params(s) + 4.0 * routed * s.moe.expert_intermediate
        else:
            matrices, act = (3, 4.0) if s.gated_mlp else (2, 1.0)
            f += 2.0 * tokens * matrices * h * s.intermediate + act * tokens * s.intermediate
        per_layer += f
    width = s.embed_proj_dim or h
    embed = (tokens * h if s.learned_positions else 0.0) + (2.0 * tokens * width * h if s.embed_proj_dim else 0.0)
    head = 2.0 * head_tokens * width * (s.vocab + (h if s.embed_proj_dim else 0))
    return embed + per_layer + 5.0 * head_tokens * h + head


def prefill_flops(config: Mapping[str, Any] | ModelSpec, new_tokens: int, cached_tokens: int = 0) -> float:
    """FLOPs to prefill ``new_tokens`` of one sequence whose first ``cached_tokens`` have cached KV (a prefix
    hit): the per-token ops on the new tokens, attention of each new token over the cached prefix and,
    causally, the new tokens before it, and the LM head on the last token. With ``cached_tokens=0`` this is
    the total of the prefill graph's ops for batch 1."""
    s = config if isinstance(config, ModelSpec) else model_spec(config)
    if new_tokens <= 0:
        return 0.0
    pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1) / 2
    return _linear_flops(s, new_tokens, 1) + s.layers * 2.0 * s.heads * pairs * (s.qk_head_dim + s.v_head_dim)


def decode_flops(config: Mapping[str, Any] | ModelSpec, context_tokens: int) -> float:
    """FLOPs of one decode step of one sequence attending over ``context_tokens`` cached tokens (MLA in its
    absorbed form), as the decode graph counts them for batch 1."""
    s = config if isinstance(config, ModelSpec) else model_spec(config)
    if s.mla:
        attn = 2.0 * s.heads * context_tokens * (2 * s.mla.kv_lora_rank + s.mla.qk_rope_head_dim)
    else:
        attn = 2.0 * s.heads * context_tokens * (s.qk_head_dim + s.v_head_dim)
    return _linear_flops(s, 1, 1) + s.layers * attn


# ---------------------------------------------------------------------------------------------- building


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.fwd: list[FwdOp] = []
        #: Prepended to op ids and activation ids of the replica being built (decode steps, micro-batches).
        self.prefix = ""

    def tensor(self, tid: str, nbytes: float, kind: str) -> str:
        size = int(nbytes)
        if size > MAX_TENSOR_BYTES:
            raise InputError(
                f"tensor '{tid}' would hold {size:.3g} bytes (more than 1 PiB); check hidden_size, vocab_size, "
                "batch and seq", source=self.source,
            )
        self.tensors[tid] = Tensor(tid, size, kind, kind in ("weight", "optimizer_state", "kv_cache"))
        return tid

    def op(self, oid: str, inputs: list[str], outputs: list[str], *, flops: float, category: str,
           layer: str | None, phase: str, mutates: tuple[str, ...] = (), grad_inputs: tuple[str, ...] = (),
           weights: tuple[str, ...] = (), saved: tuple[str, ...] | None = None, bwd_factor: float = 2.0,
           segment: str | None = None, bwd_flops: float | None = None, bwd_workspace_bytes: int = 0,
           host_ok: bool = False) -> None:
        touched = sum(self.tensors[t].bytes for t in (*inputs, *outputs))
        op = Op(self.prefix + oid, tuple(inputs), tuple(outputs), mutates, None, float(flops), float(touched),
                not mutates, category, layer, phase, host_ok)
        self.ops.append(op)
        saved_ids = tuple(t for t in inputs if t not in mutates) if saved is None else saved
        self.fwd.append(FwdOp(op, grad_inputs, weights, saved_ids,
                              bwd_factor * flops if bwd_flops is None else bwd_flops, segment, bwd_workspace_bytes))


def graph_from_hf_config(config: Mapping[str, Any], workload: Any, *, name: str | None = None,
                         source: str = "config.json") -> Graph:
    """The graph of one step of ``workload`` (a :class:`core.sources.Workload`) for the model in ``config``."""
    spec = model_spec(config, source=source)
    kind = getattr(workload, "kind", None)
    if kind not in ("train", "prefill", "decode"):
        raise InputError(f"unknown workload {kind!r}; expected train, prefill or decode", field="workload")
    batch, seq = workload.batch, workload.seq
    for key, value in (("batch", batch), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"must be a whole number >= 1, got {value!r}", field=key)
    if batch * seq > MAX_TOKENS:
        raise InputError(f"batch × seq = {batch * seq} tokens is implausibly large (limit {MAX_TOKENS})", field="seq")
    train = kind == "train"
    micro = getattr(workload, "micro_batches", 1) or 1
    if micro > 1 and (kind == "train" or batch % micro):
        raise InputError(f"micro_batches={micro} needs a prefill or decode workload whose batch ({batch}) it "
                         "divides", field="micro_batches")
    params = count_params(spec)
    b = _Builder(source)
    extra_meta = _build(b, spec, kind, batch, seq, bool(getattr(workload, "checkpointing", False)) and train, micro)
    ops = b.ops
    if train:
        ops = [*ops, *synthesize_training(b.tensors, b.fwd, _optimizer_groups(b, spec), loss="loss.out")]
    for op in ops:
        if op.flops > 1e24:
            raise InputError(f"op '{op.id}' would need {op.flops:.3g} FLOPs; check batch and seq", source=source)
    act_bytes = 2
    workload_meta: dict[str, Any] = {"kind": kind, "batch": batch, "seq": seq,
                                     "checkpointing": bool(getattr(workload, "checkpointing", False))}
    warnings: list[str] = []
    meta: dict[str, Any] = {
        "source": source,
        "model_type": spec.model_type,
        "params_total": params.total,
        "params_active": params.active,
        "param_breakdown": params.to_dict(),
        "workload": workload_meta,
        "kv_bytes_per_token": kv_bytes_per_token(spec, act_bytes),
        "weight_dtype_bytes": 2 if train else spec.weight_bytes,
        "warnings": warnings,
    }
    if micro > 1:
        workload_meta["micro_batches"] = micro
    if spec.moe and not train:
        tokens = batch // micro * (1 if kind == "decode" else seq)
        meta["active_experts_per_layer"] = expected_active_experts(spec.moe.num_experts, spec.moe.top_k, tokens)
    if kind == "decode":
        meta["host_runnable"] = (
            "decode attention ops are host_ok: attention over the KV cache may run on a host tier's CPUs next "
            "to a host-resident cache (FlexGen); whether a plan does so is the planner's choice")
    meta.update(extra_meta)
    moe_decode = extra_meta.get("moe_decode")
    if moe_decode is not None:
        workload_meta["steps"] = moe_decode["window_steps"]
        warnings.append(moe_decode["assumption"])
    label = name or f"{spec.model_type} {kind} b{batch} s{seq}"
    return Graph(label, tuple(b.tensors.values()), tuple(ops), meta)


def _optimizer_groups(b: _Builder, spec: ModelSpec) -> list[OptimizerGroup]:
    by_layer: dict[str | None, list[str]] = {}
    for f in b.fwd:
        for w in f.weights:
            by_layer.setdefault(f.op.layer, [])
            if w not in by_layer[f.op.layer]:
                by_layer[f.op.layer].append(w)
    return [OptimizerGroup(f"{layer}.adam" if layer else "adam", layer, tuple(ws)) for layer, ws in by_layer.items()]


def _build(b: _Builder, s: ModelSpec, kind: str, batch: int, seq: int, checkpointing: bool,
           micro_batches: int = 1) -> dict[str, Any]:
    """Forward (train), prefill or decode ops; ``b.fwd`` records what a backward would need.

    Decode may hold several *replicas* of the per-token computation: ``micro_batches`` (FlexGen's GPU
    batches: per layer, each micro-batch runs with the same weights and its own KV cache) and, for an MoE
    model whose step reads only some experts, a window of consecutive steps (:func:`moe_decode_window`).
    Returns what the graph's metadata should say about both."""
    train = kind == "train"
    act = 2
    wbytes = 2 if train else s.weight_bytes
    mb_batch = batch // micro_batches
    tokens = mb_batch * (1 if kind == "decode" else seq)
    phase = "forward" if train else kind
    h = s.hidden
    kv_layer = _kv_per_token_layer(s)
    window = moe_decode_window(s, tokens) if kind == "decode" else None
    steps = window.steps if window else 1

    def weight(tid: str, params: int) -> str:
        return b.tensor(tid, params * wbytes, "weight")

    def activation(tid: str, elements: float, nbytes: int = act) -> str:
        return b.tensor(b.prefix + tid, elements * nbytes, "activation")

    width = s.embed_proj_dim or h
    hq = s.heads * s.qk_head_dim
    attn_out_dim = s.heads * s.v_head_dim

    def embed() -> str:
        tok = b.tensor(b.prefix + "tokens", tokens * 4, "input")
        embed_weights = [weight("embed.weight", s.vocab * width)]
        embed_flops = 0.0
        if s.learned_positions:
            embed_weights.append(weight("embed.positions.weight", s.learned_positions * h))
            embed_flops += tokens * h
        if s.embed_proj_dim:
            embed_weights.append(weight("embed.project_in.weight", width * h))
            embed_flops += 2.0 * tokens * width * h
        x = activation("embed.out", tokens * h)
        b.op("embed", [tok, *embed_weights], [x], flops=embed_flops, category="embedding", layer="embed",
             phase=phase, weights=tuple(embed_weights), saved=(tok,), bwd_flops=float(tokens * h) + 2 * embed_flops)
        return x

    def layer(i: int, x: str, step: int, mb_tag: str) -> str:
        p = f"layers.{i}"
        seg = p if checkpointing else None

        def norm(name: str, x_in: str) -> str:
            return _norm(b, s, f"{p}.{name}", x_in, tokens, train=train, phase=phase, layer=p, seg=seg,
                         weight=weight, activation=activation)

        h1 = norm("attn_norm", x)
        # QKV: for MLA the low-rank q/kv projections and their norms are one fused op.
        w_qkv = weight(f"{p}.qkv.weight", _qkv_params(s))
        if s.mla and kind == "decode":
            # Absorbed form: q in the latent space, one latent + rope key per token appended to the cache.
            qkv_elems = tokens * (s.heads * (s.mla.kv_lora_rank + s.mla.qk_rope_head_dim) + kv_layer)
        elif s.mla:
            qkv_elems = tokens * (2 * hq + attn_out_dim)
        else:
            qkv_elems = tokens * (hq + 2 * s.kv_heads * s.head_dim)
        qkv = activation(f"{p}.qkv.out", qkv_elems)
        b.op(f"{p}.qkv", [h1, w_qkv], [qkv], flops=2.0 * tokens * _qkv_params(s), category="matmul", layer=p,
             phase=phase, grad_inputs=(h1,), weights=(w_qkv,), segment=seg)

        attn = activation(f"{p}.attention.out", tokens * attn_out_dim)
        attn_inputs = [qkv]
        mutates: tuple[str, ...] = ()
        outputs = [attn]
        host_ok = False
        if kind in ("train", "prefill"):
            causal_pairs = mb_batch * seq * (seq + 1) / 2
            attn_flops = 2.0 * s.heads * causal_pairs * (s.qk_head_dim + s.v_head_dim)
            if train:
                outputs.append(activation(f"{p}.attention.lse", mb_batch * s.heads * seq, 4))
            else:
                cache = b.tensor(f"{mb_tag}{p}.kv_cache", mb_batch * seq * kv_layer * act, "kv_cache")
                attn_inputs.append(cache)
                mutates = (cache,)
        else:
            # Decode reads the context's K/V and writes only the new token's: the cache of earlier tokens is
            # read-only, the step's slot (one token per sequence) is the only thing mutated, so a plan that
            # keeps the cache below writes back ~batch·kv_bytes_per_token per step, not the whole cache.
            # Attention over the cache may run on the host next to a host-resident cache (FlexGen): host_ok.
            # `seq` counts the token being generated: the cache holds the seq - 1 before it.
            cached = [b.tensor(f"{mb_tag}{p}.kv_cache", mb_batch * (seq - 1) * kv_layer * act, "kv_cache")] if seq > 1 else []
            earlier = [f"{_step_tag(w, steps)}{mb_tag}{p}.kv_cache.new" for w in range(step)]
            new = b.tensor(f"{_step_tag(step, steps)}{mb_tag}{p}.kv_cache.new", mb_batch * kv_layer * act, "kv_cache")
            attn_inputs += [*cached, *earlier, new]
            mutates = (new,)
            context = seq + step
            if s.mla:
                attn_flops = 2.0 * s.heads * mb_batch * context * (2 * s.mla.kv_lora_rank + s.mla.qk_rope_head_dim)
            else:
                attn_flops = 2.0 * s.heads * mb_batch * context * (s.qk_head_dim + s.v_head_dim)
            host_ok = True
        b.op(f"{p}.attention", attn_inputs, outputs, flops=attn_flops, category="attention", layer=p, phase=phase,
             mutates=mutates, grad_inputs=(qkv,), saved=(qkv, *outputs), bwd_factor=2.5, segment=seg,
             host_ok=host_ok)

        w_o = weight(f"{p}.o_proj.weight", _o_proj_params(s))
        x_mid = activation(f"{p}.o_proj.out", tokens * h)
        b.op(f"{p}.o_proj", [attn, w_o, x], [x_mid], flops=2.0 * tokens * attn_out_dim * h + tokens * h,
             category="matmul", layer=p, phase=phase, grad_inputs=(attn, x), weights=(w_o,), saved=(attn, w_o),
             segment=seg)

        h2 = norm("mlp_norm", x_mid)
        if s.is_moe_layer(i):
            return _moe_block(b, s, p, h2, x_mid, kind=kind, tokens=tokens, phase=phase, weight=weight,
                              activation=activation, seg=seg, layer_index=i, window=window, step=step)
        w_mlp = weight(f"{p}.mlp.weight", _dense_mlp_params(s))
        out = activation(f"{p}.mlp.out", tokens * h)
        saved_n, work_n = _mlp_intermediates(s)
        side = (activation(f"{p}.mlp.saved", tokens * saved_n * s.intermediate) if train
                else b.tensor(b.prefix + f"{p}.mlp.workspace", tokens * work_n * s.intermediate * act, "workspace"))
        matrices = 3 if s.gated_mlp else 2
        b.op(f"{p}.mlp", [h2, w_mlp, x_mid], [out, side],
             flops=2.0 * tokens * matrices * h * s.intermediate + (4.0 if s.gated_mlp else 1.0) * tokens * s.intermediate,
             category="mlp", layer=p, phase=phase, grad_inputs=(h2, x_mid), weights=(w_mlp,),
             saved=(h2, w_mlp, side), segment=seg)
        return out

    def head(x: str) -> None:
        head_tokens = tokens if kind in ("train", "decode") else mb_batch
        xf = _norm(b, s, "final_norm", x, head_tokens, train=train, phase=phase, layer="head", seg=None,
                   weight=weight, activation=activation)
        head_weights = []
        if s.embed_proj_dim:
            head_weights.append(weight("lm_head.project_out.weight", width * h))
        head_weights.append("embed.weight" if s.tie_embeddings else weight("lm_head.weight", s.vocab * width))
        logits = activation("lm_head.out", head_tokens * s.vocab)
        b.op("lm_head", [xf, *head_weights], [logits],
             flops=2.0 * head_tokens * width * (s.vocab + (h if s.embed_proj_dim else 0)),
             category="matmul", layer="head", phase=phase, grad_inputs=(xf,), weights=tuple(head_weights))
        if train:
            # HF's causal-LM loss upcasts the logits to fp32, keeps the fp32 log-softmax for the backward, and
            # the backward holds three fp32 copies at once (saved log-softmax, NLL gradient, log-softmax
            # gradient) before casting the gradient back to bf16: the measured peak of a small-model step.
            fp32_bytes = tokens * s.vocab * 4
            up = b.tensor("loss.logits_fp32", fp32_bytes, "activation")
            b.op("loss.upcast", [logits], [up], flops=float(tokens * s.vocab), category="loss", layer="head",
                 phase=phase, grad_inputs=(logits,), saved=(), bwd_factor=1.0)
            labels = b.tensor("labels", tokens * 4, "input")
            loss = b.tensor("loss.out", 4, "activation")
            logsm = b.tensor("loss.log_softmax", fp32_bytes, "activation")
            b.op("loss", [up, labels], [loss, logsm], flops=5.0 * tokens * s.vocab, category="loss", layer="head",
                 phase=phase, grad_inputs=(up,), saved=(logsm, labels), bwd_factor=1.0,
                 bwd_workspace_bytes=fp32_bytes)

    for step in range(steps):
        tags = [_step_tag(step, steps) + _mb_tag(j, micro_batches) for j in range(micro_batches)]
        xs = []
        for j in range(micro_batches):
            b.prefix = tags[j]
            xs.append(embed())
        for i in range(s.layers):
            for j in range(micro_batches):
                b.prefix = tags[j]
                xs[j] = layer(i, xs[j], step, _mb_tag(j, micro_batches))
        for j in range(micro_batches):
            b.prefix = tags[j]
            head(xs[j])
    b.prefix = ""
    meta: dict[str, Any] = {}
    if micro_batches > 1:
        meta["micro_batches"] = {"count": micro_batches, "batch_each": mb_batch,
                                 "assumption": "per layer, the micro-batches run one after the other with the "
                                               "layer's weights and each its own KV cache (FlexGen's block "
                                               "schedule: weights fetched once per layer, reused by every "
                                               "micro-batch)"}
    if window is not None:
        meta["moe_decode"] = window.to_meta()
    return meta


def _step_tag(step: int, steps: int) -> str:
    return f"step{step}." if steps > 1 else ""


def _mb_tag(j: int, micro_batches: int) -> str:
    return f"mb{j}." if micro_batches > 1 else ""


@dataclass(frozen=True)
class MoEDecodeWindow:
    """The steady state of MoE decode as a window of ``steps`` consecutive decode steps.

    In one step of ``T`` tokens each expert is read with probability ``p = 1 − (1 − k/E)^T`` (uniform
    routing), so about ``E·p`` experts per layer. Over a run of steps every expert is read now and then: an
    expert left in a slow tier is fetched about once every ``1/p`` steps. The window makes that explicit:
    step ``w`` reads ``chunks[w]`` (a contiguous range of experts), the chunks partition the experts, so every
    expert is read once per window and each step reads about ``E·p`` experts, the expected traffic."""

    num_experts: int
    top_k: int
    tokens_per_step: int
    hit_probability: float
    expected_experts_per_step: float
    steps: int
    chunks: tuple[tuple[int, int], ...]  # (first expert, count) read at each step
    unread: int

    def to_meta(self) -> dict[str, Any]:
        return {
            "assumption": (
                f"steady-state decode: each expert is read with probability 1-(1-k/E)^T = {self.hit_probability:.3g} "
                f"per step (E={self.num_experts}, k={self.top_k}, T={self.tokens_per_step} tokens, uniform routing), "
                f"about {self.expected_experts_per_step:.1f} experts per layer and step; the graph holds a window "
                f"of {self.steps} decode steps, step w reading its own range of experts, so every expert is "
                "read once per window"
                + (f"; the window is capped at {MAX_MOE_WINDOW} steps, so each step reads "
                   f"{max(n for _, n in self.chunks)} experts, {self.overestimate:.1f}x the expected traffic "
                   "(conservative)" if self.overestimate > 1.05 else "")),
            "num_experts": self.num_experts, "top_k": self.top_k, "tokens_per_step": self.tokens_per_step,
            "hit_probability_per_step": self.hit_probability,
            "expected_experts_per_step": self.expected_experts_per_step,
            "window_steps": self.steps, "experts_read_per_step": [n for _, n in self.chunks],
            "experts_unread_in_window": self.unread, "traffic_overestimate": round(self.overestimate, 3),
        }

    @property
    def overestimate(self) -> float:
        """Experts a step reads over the expected number (> 1 when the window is capped)."""
        return max(n for _, n in self.chunks) / max(self.expected_experts_per_step, 1e-9)


#: Longest window of decode steps a graph holds (ops grow with it). Beyond it (Kimi-K2 at batch 1: 384
#: experts, 8 per step, would need 48) each step reads more than its expected share: conservative.
MAX_MOE_WINDOW = 16
#: Experts per weight tensor inside a window chunk (granularity for placement without 10k tensors).
EXPERTS_PER_TENSOR = 8


def moe_decode_window(s: ModelSpec, tokens: int) -> MoEDecodeWindow | None:
    """The decode window for ``s`` at ``tokens`` tokens per step, or None when a step reads every expert
    (or the model has no experts)."""
    if s.moe is None:
        return None
    e, k = s.moe.num_experts, s.moe.top_k
    active = expected_active_experts(e, k, tokens)
    if active >= e:
        return None
    p = 1.0 - (1.0 - k / e) ** tokens
    steps = min(MAX_MOE_WINDOW, math.ceil(e / active))
    base, extra = divmod(e, steps)
    sizes = [base + (1 if w < extra else 0) for w in range(steps)]
    chunks, first = [], 0
    for n in sizes:
        chunks.append((first, n))
        first += n
    return MoEDecodeWindow(e, k, tokens, p, e * p, steps, tuple(chunks), e - first)


def _mlp_intermediates(s: ModelSpec) -> tuple[int, int]:
    """(tensors of ``tokens × intermediate`` the MLP saves for backward, and that inference holds at once).

    SwiGLU saves gate, silu(gate), up and their product (4); a ReLU MLP saves only the ReLU output (read by
    both ReLU's and fc2's backward; 1); GELU saves its input and fc2 its output (2). Without autograd the
    peak inside the op is act(gate), up and the product (3), or fc1's output and the activation's (2)."""
    if s.gated_mlp:
        return 4, 3  # inference: act(gate), up and their product are alive together
    return (1 if s.activation == "relu" else 2), 2


def _norm(b: _Builder, s: ModelSpec, oid: str, x_in: str, tokens: int, *, train: bool, phase: str,
          layer: str, seg: str | None, weight: Any, activation: Any) -> str:
    """RMSNorm (Llama) or LayerNorm (OPT, GPT-2, GPT-NeoX) with what PyTorch saves for its backward.

    HF's RMSNorm upcasts to fp32: autograd keeps the fp32 input (read by pow and mul), the fp32 rsqrt per
    token and the bf16 normalised tensor (read by the weight multiply), not the bf16 input. LayerNorm keeps
    its bf16 input plus fp32 mean and rstd per token."""
    h = s.hidden
    w = weight(f"{oid}.weight", _norm_params(s))
    out = activation(f"{oid}.out", tokens * h)
    if not train:
        b.op(oid, [x_in, w], [out], flops=5.0 * tokens * h, category="norm", layer=layer, phase=phase)
        return out
    if s.norm == "rms":
        saved = activation(f"{oid}.saved", tokens * h * (4 + 2) + tokens * 4, 1)
        b.op(oid, [x_in, w], [out, saved], flops=5.0 * tokens * h, category="norm", layer=layer, phase=phase,
             grad_inputs=(x_in,), weights=(w,), saved=(w, saved), segment=seg)
    else:
        stats = activation(f"{oid}.stats", tokens * 8, 1)
        b.op(oid, [x_in, w], [out, stats], flops=5.0 * tokens * h, category="norm", layer=layer, phase=phase,
             grad_inputs=(x_in,), weights=(w,), saved=(x_in, w, stats), segment=seg)
    return out


def _moe_block(b: _Builder, s: ModelSpec, p: str, h2: str, x_mid: str, *, kind: str, tokens: int, phase: str,
               weight: Any, activation: Any, seg: str | None, layer_index: int,
               window: MoEDecodeWindow | None = None, step: int = 0) -> str:
    assert s.moe is not None
    m = s.moe
    h = s.hidden
    train = kind == "train"
    w_router = weight(f"{p}.router.weight", _router_params(s))
    scores = activation(f"{p}.router.out", tokens * m.num_experts, 4)
    b.op(f"{p}.router", [h2, w_router], [scores], flops=2.0 * tokens * h * m.num_experts, category="moe",
         layer=p, phase=phase, grad_inputs=(h2,), weights=(w_router,), segment=seg)

    residual_inputs = [x_mid]
    if m.shared_intermediate:
        w_sh = weight(f"{p}.shared_experts.weight", _shared_params(s))
        sh_out = activation(f"{p}.shared_experts.out", tokens * h)
        side = (activation(f"{p}.shared_experts.saved", tokens * 4 * m.shared_intermediate) if train
                else b.tensor(b.prefix + f"{p}.shared_experts.workspace", tokens * 2 * m.shared_intermediate * 2, "workspace"))
        b.op(f"{p}.shared_experts", [h2, w_sh], [sh_out, side], flops=2.0 * tokens * _shared_params(s),
             category="mlp", layer=p, phase=phase, grad_inputs=(h2,), weights=(w_sh,), saved=(h2, w_sh, side),
             segment=seg)
        residual_inputs.append(sh_out)

    # Which experts this step reads: all in training (every expert sees tokens and Adam updates them all);
    # in decode the step's range of the steady-state window (moe_decode_window); in a prefill the expected
    # number of distinct experts under uniform routing, the rest stored but unread. When every expert is
    # read, one tensor holds them all (the op needs them together anyway).
    active = m.num_experts if train else expected_active_experts(m.num_experts, m.top_k, tokens)
    if active == m.num_experts:
        experts = [weight(f"{p}.experts.weight", m.num_experts * _expert_params(s))]
    elif window is not None:
        first, count = window.chunks[step]
        experts = []
        for a in range(first, first + count, EXPERTS_PER_TENSOR):
            n = min(EXPERTS_PER_TENSOR, first + count - a)
            experts.append(weight(f"{p}.experts.{a}-{a + n - 1}.weight", n * _expert_params(s)))
        if window.unread and step == 0:
            weight(f"{p}.experts.unused.weight", window.unread * _expert_params(s))
    else:
        start = (layer_index * active) % m.num_experts
        chosen = sorted((start + j) % m.num_experts for j in range(active))
        experts = [weight(f"{p}.experts.{e}.weight", _expert_params(s)) for e in chosen]
        weight(f"{p}.experts.unused.weight", (m.num_experts - active) * _expert_params(s))
    out = activation(f"{p}.experts.out", tokens * h)
    routed = tokens * m.top_k
    side = (activation(f"{p}.experts.saved", routed * (4 * m.expert_intermediate + h)) if train
            else b.tensor(b.prefix + f"{p}.experts.workspace", routed * (2 * m.expert_intermediate + h) * 2, "workspace"))
    b.op(f"{p}.experts", [h2, scores, *experts, *residual_inputs], [out, side],
         flops=2.0 * routed * _expert_params(s) + 4.0 * routed * m.expert_intermediate, category="moe", layer=p,
         phase=phase, grad_inputs=(h2, scores, *residual_inputs), weights=tuple(experts),
         saved=(h2, scores, *experts, side), segment=seg)
    return out
