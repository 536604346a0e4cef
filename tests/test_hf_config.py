"""Transformer graphs from HF configs: parameter counts, KV bytes, training state, structure, bad configs."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.graph import graph_from_dict, graph_to_dict
from core.liveness import analyze
from core.sources import Workload
from core.sources.hf_config import (
    count_params,
    expected_active_experts,
    graph_from_hf_config,
    kv_bytes_per_token,
)

CONFIGS = Path(__file__).resolve().parents[1] / "sample_models" / "configs"


def config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def within(value: float, target: float, rel: float = 0.01) -> bool:
    return abs(value - target) <= rel * target


QWEN2_MOE = {  # Qwen1.5-MoE-A2.7B's published config fields
    "model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
    "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936, "num_experts": 60,
    "num_experts_per_tok": 4, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": False,
}
KIMI_K2 = {  # Kimi-K2's published config fields (DeepSeek-V3 architecture, 384 experts, 64 heads)
    "model_type": "kimi_k2", "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 64, "num_key_value_heads": 64, "n_routed_experts": 384,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
    "topk_method": "noaux_tc", "vocab_size": 163840, "tie_word_embeddings": False,
}


class TestParamCounts:
    def test_llama2_7b_exact(self) -> None:
        assert count_params(config("llama-2-7b")).total == 6_738_415_616

    def test_llama3_70b(self) -> None:
        p = count_params(config("llama-3-70b"))
        assert within(p.total, 70.6e9) and p.active == p.total

    def test_mixtral(self) -> None:
        p = count_params(config("mixtral-8x7b"))
        assert within(p.total, 46.7e9)
        assert within(p.active, 12.9e9)

    def test_deepseek_v3(self) -> None:
        p = count_params(config("deepseek-v3"))
        assert within(p.total, 671e9)
        # Counted from the config: embedding and head included (37 B is the rounded headline figure).
        assert within(p.active, 37.5e9)
        assert p.embedding == p.head == 129280 * 7168

    def test_kimi_k2_about_1t(self) -> None:
        p = count_params(KIMI_K2)
        assert within(p.total, 1.04e12, 0.02)
        assert within(p.active, 32.9e9, 0.05)

    def test_qwen_moe(self) -> None:
        p = count_params(QWEN2_MOE)
        assert within(p.total, 14.3e9)
        assert within(p.active, 2.7e9, 0.03)

    def test_tied_embeddings_counted_once(self) -> None:
        cfg = {**config("llama-2-7b"), "tie_word_embeddings": True}
        assert count_params(cfg).total == 6_738_415_616 - 32000 * 4096


class TestKVBytes:
    def test_standard_llama2(self) -> None:
        assert kv_bytes_per_token(config("llama-2-7b")) == 2 * 32 * 32 * 128 * 2

    def test_gqa_llama3(self) -> None:
        assert kv_bytes_per_token(config("llama-3-70b")) == 2 * 80 * 8 * 128 * 2

    def test_mla_deepseek(self) -> None:
        assert kv_bytes_per_token(config("deepseek-v3")) == 61 * (512 + 64) * 2

    def test_graph_kv_cache_matches(self) -> None:
        g = graph_from_hf_config(config("llama-3-70b"), Workload("decode", 4, 1000))
        # 999 cached tokens plus the slot of the token this step appends.
        assert g.total_bytes_by_kind["kv_cache"] == 4 * 1000 * kv_bytes_per_token(config("llama-3-70b"))
        assert g.meta["kv_bytes_per_token"] == kv_bytes_per_token(config("llama-3-70b"))


class TestTraining:
    @pytest.mark.parametrize("name", ["llama-2-7b", "mixtral-8x7b"])
    def test_model_state_16_bytes_per_param(self, name: str) -> None:
        g = graph_from_hf_config(config(name), Workload("train", 1, 256))
        by = g.total_bytes_by_kind
        params = count_params(config(name)).total
        assert by["weight"] == 2 * params
        assert by["gradient"] == 2 * params
        assert by["optimizer_state"] == 12 * params
        assert by["weight"] + by["gradient"] + by["optimizer_state"] == 16 * params

    def test_optimizer_ops_update_in_place_on_host(self) -> None:
        g = graph_from_hf_config(config("llama-2-7b"), Workload("train", 1, 128))
        opt = [op for op in g.ops if op.phase == "optimizer"]
        assert len(opt) == 32 + 2
        for op in opt:
            assert op.host_ok and op.mutates and not op.outputs and not op.recomputable
            kinds = {g.tensor_by_id[t].kind for t in op.mutates}
            assert kinds == {"weight", "optimizer_state"}

    def test_backward_reads_saved_activations(self) -> None:
        g = graph_from_hf_config(config("llama-2-7b"), Workload("train", 1, 128))
        bwd = g.ops[g.op_index["layers.5.mlp.bwd"]]
        assert "layers.5.mlp.saved" in bwd.inputs and "layers.5.mlp_norm.out" in bwd.inputs
        assert "layers.5.mlp.weight.grad" in bwd.outputs
        # forward before backward before optimizer
        phases = [op.phase for op in g.ops]
        assert phases.index("backward") > max(i for i, p in enumerate(phases) if p == "forward")
        assert phases.index("optimizer") > max(i for i, p in enumerate(phases) if p == "backward")

    def test_checkpointing_recomputes_and_lowers_peak(self) -> None:
        cfg = config("llama-2-7b")
        plain = graph_from_hf_config(cfg, Workload("train", 2, 2048))
        ckpt = graph_from_hf_config(cfg, Workload("train", 2, 2048, checkpointing=True))
        assert any(op.id == "layers.3.mlp.recompute" for op in ckpt.ops)
        assert not any(op.id.endswith(".recompute") for op in plain.ops)
        assert analyze(ckpt).no_offload_peak_bytes < analyze(plain).no_offload_peak_bytes
        assert sum(op.flops for op in ckpt.ops) > sum(op.flops for op in plain.ops)

    def test_flops_near_6nd(self) -> None:
        # Training FLOPs ≈ 6 · params · tokens (plus attention): a classic sanity check.
        tokens = 4 * 2048
        g = graph_from_hf_config(config("llama-2-7b"), Workload("train", 4, 2048))
        total = sum(op.flops for op in g.ops)
        assert 6 * 6.74e9 * tokens < total < 1.4 * 6 * 6.74e9 * tokens


class TestInference:
    def test_prefill_writes_cache_decode_reads_and_appends(self) -> None:
        g = graph_from_hf_config(config("llama-2-7b"), Workload("prefill", 2, 512))
        attn = g.ops[g.op_index["layers.0.attention"]]
        assert attn.mutates == ("layers.0.kv_cache",)
        t = g.tensor_by_id["layers.0.kv_cache"]
        assert t.kind == "kv_cache" and t.persistent

    def test_decode_mutates_only_the_new_tokens_kv(self) -> None:
        # Issue 13: the whole cache marked mutated made an offloading plan write it all back every step.
        spec = config("llama-2-7b")
        g = graph_from_hf_config(spec, Workload("decode", 2, 512))
        attn = g.ops[g.op_index["layers.0.attention"]]
        assert "layers.0.kv_cache" in attn.inputs
        assert attn.mutates == ("layers.0.kv_cache.new",)
        new = g.tensor_by_id["layers.0.kv_cache.new"]
        assert new.kind == "kv_cache" and new.persistent
        assert new.bytes == 2 * kv_bytes_per_token(spec) // 32
        mutated = {t for op in g.ops for t in op.mutates}
        assert sum(g.tensor_by_id[t].bytes for t in mutated) == 2 * kv_bytes_per_token(spec)

    def test_decode_attention_flops_scale_with_context(self) -> None:
        a = graph_from_hf_config(config("llama-2-7b"), Workload("decode", 1, 1000))
        b = graph_from_hf_config(config("llama-2-7b"), Workload("decode", 1, 4000))
        fa = a.ops[a.op_index["layers.0.attention"]].flops
        fb = b.ops[b.op_index["layers.0.attention"]].flops
        assert fb == pytest.approx(4 * fa)

    def test_moe_decode_plans_the_steady_state(self) -> None:
        # Issue 13: experts no token of one step hits were parked as an "unused" tensor that never moved.
        # Now a window of steps reads every expert once, each step about the expected E·(1-(1-k/E)^T).
        cfg = config("deepseek-v3")
        g = graph_from_hf_config(cfg, Workload("decode", 16, 1024))
        moe = g.meta["moe_decode"]
        p = 1 - (1 - 8 / 256) ** 16
        assert moe["hit_probability_per_step"] == pytest.approx(p)
        assert moe["window_steps"] == 3 and sum(moe["experts_read_per_step"]) == 256
        assert max(moe["experts_read_per_step"]) <= math.ceil(256 * p)
        assert "probability" in moe["assumption"] and moe["assumption"] in g.meta["warnings"]
        assert g.meta["workload"]["steps"] == 3
        assert not any("unused" in t.id for t in g.tensors)
        read: set[str] = set()
        for w in range(3):
            op = g.ops[g.op_index[f"step{w}.layers.10.experts"]]
            step_read = {t for t in op.inputs if ".experts." in t}
            assert sum(g.tensor_by_id[t].bytes for t in step_read) == moe["experts_read_per_step"][w] * 3 * 7168 * 2048 * 2
            assert not step_read & read
            read |= step_read
        layer_experts = {t.id for t in g.tensors if t.id.startswith("layers.10.experts.")}
        assert read == layer_experts
        assert g.total_bytes_by_kind["weight"] == 2 * count_params(cfg).total
        # first_k_dense_replace = 3: layers 0..2 are dense
        assert "step0.layers.2.mlp" in g.op_index and "step0.layers.3.experts" in g.op_index

    def test_moe_decode_window_capped_conservatively(self) -> None:
        g = graph_from_hf_config(config("deepseek-v3"), Workload("decode", 1, 256))
        moe = g.meta["moe_decode"]
        assert moe["window_steps"] == 16 and moe["experts_read_per_step"] == [16] * 16
        assert moe["traffic_overestimate"] == pytest.approx(2.0)

    def test_micro_batched_decode(self) -> None:
        cfg = config("llama-2-7b")
        one = graph_from_hf_config(cfg, Workload("decode", 8, 512))
        four = graph_from_hf_config(cfg, Workload("decode", 8, 512, micro_batches=4))
        assert four.meta["micro_batches"]["count"] == 4
        assert four.total_bytes_by_kind["kv_cache"] == one.total_bytes_by_kind["kv_cache"]
        assert four.total_bytes_by_kind["weight"] == one.total_bytes_by_kind["weight"]
        assert sum(op.flops for op in four.ops) == pytest.approx(sum(op.flops for op in one.ops))
        # per layer the four micro-batches run back to back with the same weights, each with its own cache
        ids = [op.id for op in four.ops]
        k = ids.index("mb0.layers.3.qkv")
        assert ids[k:k + 24:6] == [f"mb{j}.layers.3.qkv" for j in range(4)]
        attn = four.ops[four.op_index["mb2.layers.3.attention"]]
        assert "mb2.layers.3.kv_cache" in attn.inputs and attn.mutates == ("mb2.layers.3.kv_cache.new",)
        assert attn.host_ok
        with pytest.raises(InputError, match="micro_batches"):
            graph_from_hf_config(cfg, Workload("decode", 6, 512, micro_batches=4))

    def test_expected_active_experts(self) -> None:
        assert expected_active_experts(256, 8, 1) == 8
        assert expected_active_experts(8, 2, 4096) == 8
        assert 8 < expected_active_experts(256, 8, 16) < 256

    def test_prefill_head_only_last_token(self) -> None:
        g = graph_from_hf_config(config("llama-2-7b"), Workload("prefill", 3, 100))
        assert g.tensor_by_id["lm_head.out"].bytes == 3 * 32000 * 2


class TestStructure:
    @pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-70b", "mixtral-8x7b", "deepseek-v3"])
    @pytest.mark.parametrize("kind", ["train", "prefill", "decode"])
    def test_valid_native_graph(self, name: str, kind: str) -> None:
        g = graph_from_hf_config(config(name), Workload(kind, 2, 512, checkpointing=kind == "train"))
        again = graph_from_dict(graph_to_dict(g))
        assert again.tensors == g.tensors and again.ops == g.ops
        # an MoE decode window multiplies the ops by its steps (16 at batch 2 for DeepSeek-V3)
        assert len(g.ops) <= (2000 * g.meta.get("workload", {}).get("steps", 1))
        assert all(op.category in {"embedding", "norm", "attention", "matmul", "mlp", "moe", "loss", "optimizer"}
                   for op in g.ops)
        assert all(op.flops >= 0 and op.bytes_accessed > 0 for op in g.ops if op.phase != "optimizer")

    def test_deepseek_all_workloads_build(self) -> None:
        """Speed is measured in bench/, not asserted here; this checks the three workloads build and differ."""
        cfg = config("deepseek-v3")
        graphs = {kind: graph_from_hf_config(cfg, Workload(kind, 4, 4096)) for kind in ("train", "prefill", "decode")}
        assert len(graphs["train"].ops) > len(graphs["prefill"].ops)
        assert any(op.phase == "optimizer" for op in graphs["train"].ops)

    def test_unknown_model_type_is_dense(self) -> None:
        cfg = {**config("llama-2-7b"), "model_type": "brand_new_llm", "num_hidden_layers": 2}
        g = graph_from_hf_config(cfg, Workload("decode", 1, 16))
        assert g.meta["model_type"] == "brand_new_llm" and "layers.1.mlp" in g.op_index

    def test_text_config_nested(self) -> None:
        g = graph_from_hf_config({"model_type": "llava", "text_config": config("llama-2-7b")}, Workload("decode"))
        assert g.meta["params_total"] == 6_738_415_616


class TestBadConfigs:
    @pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                                       "intermediate_size"])
    def test_missing_field_named(self, field: str) -> None:
        cfg = config("llama-2-7b")
        del cfg[field]
        with pytest.raises(InputError, match=field) as err:
            graph_from_hf_config(cfg, Workload("train"), source="my/config.json")
        assert "my/config.json" in str(err.value)

    def test_wrong_type(self) -> None:
        with pytest.raises(InputError, match=r"hidden_size.*whole number"):
            graph_from_hf_config({**config("llama-2-7b"), "hidden_size": "4096"}, Workload("train"))

    def test_unsupported_architecture(self) -> None:
        with pytest.raises(InputError, match=r"model_type 't5'.*not a decoder-only"):
            graph_from_hf_config({"model_type": "t5", "d_model": 512}, Workload("train"))

    def test_absurd_size(self) -> None:
        with pytest.raises(InputError, match=r"hidden_size: .*implausibly large"):
            graph_from_hf_config({**config("llama-2-7b"), "hidden_size": 10**30}, Workload("train"))
        with pytest.raises(InputError, match=r"seq: .*tokens is implausibly large"):
            graph_from_hf_config(config("llama-2-7b"), Workload("train", 2**13, 2**12))

    def test_heads_not_divisible(self) -> None:
        with pytest.raises(InputError, match="num_key_value_heads"):
            graph_from_hf_config({**config("llama-2-7b"), "num_key_value_heads": 7}, Workload("train"))

    def test_not_a_mapping(self) -> None:
        with pytest.raises(InputError, match="expected a JSON object"):
            graph_from_hf_config([1, 2], Workload("train"))  # type: ignore[arg-type]

    def test_tierplan_file_is_not_a_config(self) -> None:
        with pytest.raises(InputError, match="not a Hugging Face config"):
            graph_from_hf_config({"format": "tierplan-graph/1", "tensors": [], "ops": []}, Workload("train"))


_MUTATIONS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**13), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["llama-2-7b", "mixtral-8x7b", "deepseek-v3"]),
    edits=st.lists(st.tuples(st.sampled_from([
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
        "intermediate_size", "num_local_experts", "num_experts_per_tok", "n_routed_experts", "kv_lora_rank",
        "q_lora_rank", "first_k_dense_replace", "moe_layer_freq", "head_dim", "model_type", "tie_word_embeddings",
        "moe_intermediate_size", "n_shared_experts", "text_config", "mlp_only_layers", "num_experts",
    ]), _MUTATIONS), max_size=3),
    deletions=st.lists(st.sampled_from(["hidden_size", "vocab_size", "num_attention_heads", "kv_lora_rank"]), max_size=1),
    kind=st.sampled_from(["train", "prefill", "decode"]),
)
def test_fuzz_mutated_configs(name: str, edits: list[tuple[str, Any]], deletions: list[str], kind: str) -> None:
    """Every mutated config gives a valid graph or a clean InputError — never another exception."""
    cfg = copy.deepcopy(config(name))
    cfg["num_hidden_layers"] = 4
    for key, value in edits:
        cfg[key] = value
    for key in deletions:
        cfg.pop(key, None)
    try:
        g = graph_from_hf_config(cfg, Workload(kind, 1, 64))
    except InputError as exc:
        assert exc.message and "\n" not in exc.message
        return
    graph_from_dict(graph_to_dict(g))


GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024,
        "activation_function": "gelu_new"}  # gpt2 (124 M)
NEOX_20B = {"model_type": "gpt_neox", "hidden_size": 6144, "num_hidden_layers": 44, "num_attention_heads": 64,
            "intermediate_size": 24576, "vocab_size": 50432, "hidden_act": "gelu", "tie_word_embeddings": False}


class TestClassicDecoders:
    """OPT (FlexGen's models), GPT-2 and GPT-NeoX: LayerNorm, biases, learned positions, two-matrix MLP."""

    def test_opt_param_counts_match_hf(self) -> None:
        # HF's OPTForCausalLM on the meta device (bench/fidelity.py): 29,974,540,288 and 174,604,468,224.
        assert count_params(config("opt-30b")).total == 29_974_540_288
        assert within(count_params(config("opt-175b")).total, 174.6e9)

    def test_gpt2_and_neox_exact(self) -> None:
        assert count_params(GPT2).total == 124_439_808  # HF gpt2
        assert count_params(NEOX_20B).total == 20_554_567_680  # EleutherAI/gpt-neox-20b

    def test_opt_structure(self) -> None:
        cfg = config("opt-30b")
        g = graph_from_hf_config(cfg, Workload("train", 1, 256))
        assert "embed.positions.weight" in g.tensor_by_id
        assert g.tensor_by_id["embed.positions.weight"].bytes == 2050 * 7168 * 2
        assert "lm_head.weight" not in g.tensor_by_id  # tied to the token embedding
        # LayerNorm (weight + bias) keeps its input and per-token stats; ReLU MLP saves one intermediate
        assert g.tensor_by_id["layers.0.attn_norm.weight"].bytes == 2 * 7168 * 2
        assert g.tensor_by_id["layers.0.attn_norm.stats"].bytes == 256 * 8
        assert g.tensor_by_id["layers.0.mlp.saved"].bytes == 256 * 28672 * 2
        assert g.total_bytes_by_kind["weight"] == 2 * count_params(cfg).total
        inference = graph_from_hf_config(cfg, Workload("decode", 4, 512))
        assert inference.tensor_by_id["layers.0.kv_cache.new"].bytes == 4 * 2 * 7168 * 2

    def test_opt_ffn_dim_alias_and_projection(self) -> None:
        cfg = {**config("opt-30b"), "num_hidden_layers": 2, "word_embed_proj_dim": 512}
        p = count_params(cfg)
        assert p.embedding == 50272 * 512 + 2050 * 7168 + 2 * 512 * 7168
        g = graph_from_hf_config(cfg, Workload("prefill", 1, 64))
        assert "embed.project_in.weight" in g.tensor_by_id and "lm_head.project_out.weight" in g.tensor_by_id

    def test_post_layernorm_opt_refused(self) -> None:
        with pytest.raises(InputError, match="do_layer_norm_before"):
            count_params({**config("opt-30b"), "do_layer_norm_before": False})

    def test_gpt2_builds_all_workloads(self) -> None:
        for kind in ("train", "prefill", "decode"):
            g = graph_from_hf_config(GPT2, Workload(kind, 2, 128))
            assert graph_from_dict(graph_to_dict(g)).ops == g.ops

    @pytest.mark.parametrize(("model_type", "missing"), [("bloom", "ALiBi"), ("falcon", "parallel attention"),
                                                         ("gptj", "rotary_dim"), ("mpt", "ALiBi")])
    def test_other_families_refused_by_name(self, model_type: str, missing: str) -> None:
        with pytest.raises(InputError, match=missing) as exc:
            count_params({"model_type": model_type, "hidden_size": 64, "n_layer": 2})
        assert exc.value.field == "model_type" and model_type in str(exc.value)

    @pytest.mark.parametrize("cfg", [GPT2, NEOX_20B, {**json.loads((CONFIGS / "opt-30b.json").read_text()),
                                                      "num_hidden_layers": 2, "word_embed_proj_dim": 512}])
    def test_prefill_flops_equal_the_graph(self, cfg: dict[str, Any]) -> None:
        from core.sources.hf_config import prefill_flops

        graph = graph_from_hf_config(cfg, Workload("prefill", 1, 300))
        assert prefill_flops(cfg, 300) == pytest.approx(sum(op.flops for op in graph.ops), rel=1e-12)

    def test_opt_missing_ffn_dim_named(self) -> None:
        cfg = {k: v for k, v in config("opt-30b").items() if k != "ffn_dim"}
        with pytest.raises(InputError, match="ffn_dim"):
            count_params(cfg)
