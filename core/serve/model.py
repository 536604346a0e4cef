"""What the serving simulation needs from a model: KV bytes per block, prefill and decode cost, weights.

All numbers come from :mod:`core.sources.hf_config` — the same code that builds the step planner's graphs
(``kv_bytes_per_token`` with GQA's KV heads or MLA's compressed latent, ``prefill_flops`` whose attention
term grows with the cached prefix, ``decode_flops``, ``count_params``) — so the two halves of Tierplan agree
on a model. Times follow the roofline of :class:`core.hardware.Compute`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.hardware import Compute
from core.sources.hf_config import (
    ModelSpec,
    count_params,
    decode_flops,
    expected_active_experts,
    kv_bytes_per_token,
    model_spec,
    prefill_flops,
)

__all__ = ["ServeModel", "serve_model", "load_serve_model", "model_choices", "KV_DTYPE_BYTES"]

KV_DTYPE_BYTES = 2
_CONFIGS = Path(__file__).resolve().parents[2] / "sample_models" / "configs"
#: Sample graph keys that name a model whose HF config ships in ``sample_models/configs``.
_SAMPLE_CONFIGS = {
    "llama2-7b-train": "llama-2-7b", "llama2-7b-decode": "llama-2-7b", "llama3-70b-train": "llama-3-70b",
    "mixtral-8x7b-prefill": "mixtral-8x7b", "deepseek-v3-decode": "deepseek-v3",
}


@dataclass(frozen=True)
class ServeModel:
    """A model seen by the serving simulator (bytes, FLOPs; prefill/decode via :mod:`hf_config`)."""

    name: str
    spec: ModelSpec
    kv_bytes_per_token: int
    weight_bytes: int
    params_total: int
    params_active: int

    def __post_init__(self) -> None:
        base = decode_flops(self.spec, 0)
        object.__setattr__(self, "_decode_base", base)
        object.__setattr__(self, "_decode_per_ctx", decode_flops(self.spec, 1) - base)
        object.__setattr__(self, "_weights_read", {})

    def block_bytes(self, block_tokens: int) -> int:
        return self.kv_bytes_per_token * block_tokens

    def prefill_flops(self, new_tokens: int, cached_tokens: int) -> float:
        return _prefill(self.spec, int(new_tokens), int(cached_tokens))

    def prefill_coefficients(self) -> tuple[float, float, float]:
        """``(a, b, c)`` with ``prefill_flops(n, k) = a·n + c + b·(n·k + n(n+1)/2)`` for ``n >= 1`` — exact,
        since the per-token ops are linear in ``n`` and attention counts query-key pairs; lets the simulator
        evaluate many candidate hit lengths with numpy."""
        return _coefficients(self.spec)

    def decode_step_flops(self, batch: int, context_tokens_total: int) -> float:
        """One decode step for ``batch`` sequences whose contexts sum to ``context_tokens_total``:
        per-token ops once per sequence, attention linear in each context (so only the sum matters)."""
        if batch <= 0:
            return 0.0
        return batch * self._decode_base + self._decode_per_ctx * context_tokens_total  # type: ignore[attr-defined]

    def decode_weight_bytes(self, batch: int) -> int:
        """Weights one decode step reads: all dense weights, and for MoE the experts ``batch`` tokens touch."""
        s = self.spec
        if s.moe is None or batch <= 0:
            return self.weight_bytes
        cache: dict[int, int] = self._weights_read  # type: ignore[attr-defined]
        got = cache.get(batch)
        if got is None:
            got = cache[batch] = self._moe_weight_bytes(batch)
        return got

    def _moe_weight_bytes(self, batch: int) -> int:
        s = self.spec
        assert s.moe is not None
        p = count_params(s)
        moe_layers = sum(s.moe.moe_layers)
        per_expert = p.routed_experts // max(1, s.moe.num_experts * moe_layers)
        active = expected_active_experts(s.moe.num_experts, s.moe.top_k, batch)
        return (p.total - p.routed_experts + moe_layers * active * per_expert) * s.weight_bytes

    def prefill_time_s(self, compute: Compute, new_tokens: int, cached_tokens: int) -> float:
        """Roofline of one prefill: FLOPs at the compute's efficiency, or weights + KV through its memory."""
        t_flops = self.prefill_flops(new_tokens, cached_tokens) / (compute.peak_flops * compute.efficiency)
        t_mem = 0.0
        if compute.memory_bandwidth_Bps > 0:
            nbytes = self.weight_bytes + (new_tokens + cached_tokens) * self.kv_bytes_per_token
            t_mem = nbytes / (compute.memory_bandwidth_Bps * compute.memory_efficiency)
        return max(t_flops, t_mem)

    def decode_step_s(self, compute: Compute, batch: int, context_tokens_total: int) -> float:
        t_flops = self.decode_step_flops(batch, context_tokens_total) / (compute.peak_flops * compute.efficiency)
        t_mem = 0.0
        if compute.memory_bandwidth_Bps > 0:
            nbytes = self.decode_weight_bytes(batch) + context_tokens_total * self.kv_bytes_per_token
            t_mem = nbytes / (compute.memory_bandwidth_Bps * compute.memory_efficiency)
        return max(t_flops, t_mem)


@lru_cache(maxsize=4096)
def _prefill(spec: ModelSpec, new: int, cached: int) -> float:
    return prefill_flops(spec, new, cached)


@lru_cache(maxsize=64)
def _coefficients(spec: ModelSpec) -> tuple[float, float, float]:
    f10, f20, f11 = prefill_flops(spec, 1, 0), prefill_flops(spec, 2, 0), prefill_flops(spec, 1, 1)
    b = f11 - f10
    a = f20 - f10 - 2 * b
    return a, b, f10 - a - b


def serve_model(config: Any, *, name: str = "model", source: str = "config.json") -> ServeModel:
    """A :class:`ServeModel` from a parsed HF ``config.json``."""
    spec = model_spec(config, source=source)
    params = count_params(spec)
    return ServeModel(name, spec, kv_bytes_per_token(spec, KV_DTYPE_BYTES), params.total * spec.weight_bytes,
                      params.total, params.active)


def model_choices() -> dict[str, Path]:
    """The HF configs shipped with Tierplan, by name."""
    return {p.stem: p for p in sorted(_CONFIGS.glob("*.json"))}


def load_serve_model(arg: str | Path | bytes, *, source: str | None = None) -> ServeModel:
    """From a config path, raw bytes, a shipped config name (``llama-2-7b``) or a sample key."""
    if isinstance(arg, bytes):
        data, name = arg, source or "<upload>"
    else:
        text = str(arg)
        key = _SAMPLE_CONFIGS.get(text, text)
        path = model_choices().get(key, Path(text))
        name = source or (f"sample_models/configs/{path.name}" if key in model_choices() else text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read model config: {exc.strerror or exc} (expected a config.json or one of "
                             f"{', '.join(model_choices())})", source=name) from None
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", source=name) from None
    label = Path(name).stem if not isinstance(arg, bytes) else name
    return serve_model(raw, name=label, source=name)
