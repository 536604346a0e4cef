"""Timed tiered simulation: model arithmetic, decode, placement, and the independent replay check."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from core.errors import InfeasibleError, InputError
from core.hardware import with_capacity
from core.serve.capacity import run_capacity
from core.serve.check import check_log
from core.serve.model import load_serve_model, model_choices
from core.serve.simulate import NON_PROMPT_LRU, ServeConfig, simulate
from core.serve.trace import SyntheticSpec, load_trace, parse_mooncake, sample_trace_path, synthetic_trace
from core.sources import Workload
from core.sources.hf_config import graph_from_hf_config
from core.sources.presets import load_preset


@pytest.fixture(scope="module")
def llama():
    return load_serve_model("llama-2-7b")


@pytest.fixture(scope="module")
def h100():
    return load_preset("h100-sxm")


@pytest.fixture(scope="module")
def small():
    return synthetic_trace(SyntheticSpec(requests=400, seed=2, rate_per_s=4))


class TestModel:
    def test_kv_bytes_gqa_and_mla(self):
        assert load_serve_model("llama-2-7b").kv_bytes_per_token == 2 * 32 * 32 * 128 * 2
        assert load_serve_model("llama-3-70b").kv_bytes_per_token == 2 * 80 * 8 * 128 * 2  # 8 KV heads
        assert load_serve_model("deepseek-v3").kv_bytes_per_token == 61 * (512 + 64) * 2  # latent + rope key

    @pytest.mark.parametrize("name", ["llama-2-7b", "mixtral-8x7b", "deepseek-v3"])
    def test_prefill_flops_equal_the_prefill_graph(self, name):
        m = load_serve_model(name)
        raw = json.loads(model_choices()[name].read_text())
        graph = graph_from_hf_config(raw, Workload("prefill", 1, 700))
        assert m.prefill_flops(700, 0) == pytest.approx(sum(op.flops for op in graph.ops), rel=1e-12)
        a, b, c = m.prefill_coefficients()
        for n, k in ((1, 0), (300, 0), (300, 4096), (17, 99)):
            assert a * n + c + b * (n * k + n * (n + 1) / 2) == pytest.approx(m.prefill_flops(n, k), rel=1e-9)

    def test_attention_term_grows_with_the_cached_prefix(self, llama):
        assert llama.prefill_flops(512, 8192) > llama.prefill_flops(512, 0)
        assert llama.prefill_flops(512, 8192) < llama.prefill_flops(512 + 8192, 0)

    def test_bad_config(self, tmp_path):
        p = tmp_path / "c.json"
        p.write_text('{"hidden_size": 64}')
        with pytest.raises(InputError, match=r"c\.json: num_hidden_layers: missing required field"):
            load_serve_model(str(p))
        with pytest.raises(InputError, match="cannot read model config"):
            load_serve_model("no-such-model")


class TestDecodeAndPrefill:
    def test_one_request_times(self, llama, h100):
        trace = parse_mooncake(json.dumps({"timestamp": 1000, "input_length": 1000, "output_length": 11,
                                           "hash_ids": [0, 1]}))
        r = simulate(trace, llama, h100, ServeConfig(prefill_instances=1, decode_instances=1))
        assert r.ttft_s[0] == pytest.approx(llama.prefill_time_s(h100.compute, 1000, 0))
        decode = sum(llama.decode_step_s(h100.compute, 1, 1000 + s) for s in range(10))
        assert r.finish_s[0] - r.prefill_end_s[0] == pytest.approx(decode)
        assert r.tpot_s[0] == pytest.approx(decode / 10)

    def test_spaced_requests_hit_the_reuse_ceiling(self, llama, h100):
        trace = synthetic_trace(SyntheticSpec(requests=150, seed=4, rate_per_s=0.01, think_time_s=0))
        r = simulate(trace, llama, h100, ServeConfig(selective_load=False, prefill_instances=1))
        assert r.hit_blocks.tolist() == run_capacity(trace, "lru", None).hits.tolist()
        assert sum(v.sum() for v in r.hit_by_tier.values()) == r.hit_blocks.sum()

    def test_tiers_cut_ttft_and_compute(self, small, llama, h100):
        none = simulate(small, llama, h100, ServeConfig(hbm_cache=False, cache_tiers=()))
        hbm_only = simulate(small, llama, h100, ServeConfig(cache_tiers=()))
        tiers = simulate(small, llama, h100, ServeConfig())
        assert none.summary()["prefix_hit_rate"] == 0
        assert tiers.summary()["prefix_hit_rate"] >= hbm_only.summary()["prefix_hit_rate"]
        assert tiers.ttft_s.mean() < none.ttft_s.mean()
        assert tiers.summary()["prefill_compute_saved"] > 0.3

    def test_layerwise_overlap_never_slower(self, small, llama, h100):
        base = ServeConfig(hbm_cache=False, prefill_instances=64, selective_load=False)
        layer = simulate(small, llama, h100, base)
        seq = simulate(small, llama, h100, ServeConfig(**{**base.__dict__, "overlap": "sequential"}))
        assert np.all(layer.ttft_s <= seq.ttft_s + 1e-12)
        assert layer.ttft_s.sum() < seq.ttft_s.sum()

    def test_selective_load_never_slower_per_prefill_on_a_slow_ssd(self, small, llama, h100):
        slow = with_capacity(h100, "DDR", 0)
        full = simulate(small, llama, slow, ServeConfig(selective_load=False, prefill_instances=64))
        sel = simulate(small, llama, slow, ServeConfig(selective_load=True, prefill_instances=64))
        assert sel.ttft_s.mean() <= full.ttft_s.mean()

    def test_admission_after_two_uses_writes_less(self, small, llama, h100):
        one = simulate(small, llama, h100, ServeConfig(admit_after=1)).summary()["link_bytes"]["HBM->DDR"]
        two = simulate(small, llama, h100, ServeConfig(admit_after=2)).summary()["link_bytes"]["HBM->DDR"]
        assert two < one


class TestConfigErrors:
    def test_write_through_needs_inclusive(self, small, llama, h100):
        with pytest.raises(InputError, match="write_through: write-through keeps a copy"):
            simulate(small, llama, h100, ServeConfig(write_through=True))

    def test_weights_must_fit(self, small, h100):
        with pytest.raises(InfeasibleError, match=r"do not fit in HBM.*tensor_parallel"):
            simulate(small, load_serve_model("llama-3-70b"), with_capacity(h100, "HBM", 100 * 2**30), ServeConfig())

    def test_unknown_policy_and_tier(self, small, llama, h100):
        with pytest.raises(InputError, match="unknown policy"):
            simulate(small, llama, h100, ServeConfig(policy="mru"))
        with pytest.raises(InputError, match="no tier 'NVM'"):
            simulate(small, llama, h100, ServeConfig(tier_capacity_bytes=(("NVM", 1),)))


CONFIGS = [
    {},
    {"inclusive": True},
    {"inclusive": True, "write_through": True},
    {"hbm_cache": False},
    {"policy": "lru", "admit_after": 2},
    {"policy": "belady"},
    {"policy": "arc", "tier_capacity_bytes": (("DDR", 20 * 2**30),)},
    {"policy": "s3fifo", "overlap": "sequential", "prefill_instances": 1},
    {"policy": "lfu", "cache_tiers": ("SSD",)},
    {"policy": "cost", "selective_load": False},
]


class TestReplayCheck:
    @pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
    def test_every_log_passes(self, small, llama, h100, kw):
        r = simulate(small, llama, h100, ServeConfig(**kw))
        report = check_log(r.log)
        assert report.ok, report.problems
        assert report.ops_checked > 0 and (report.transfers_checked > 0 or kw.get("hbm_cache") is False)

    def test_shipped_trace_passes(self, llama, h100):
        r = simulate(load_trace(sample_trace_path()), llama, h100, ServeConfig())
        assert check_log(r.log).ok
        assert 0 < r.summary()["prefix_hit_rate"] < 0.6396

    def test_it_catches_broken_logs(self, small, llama, h100):
        r = simulate(small, llama, h100, ServeConfig(tier_capacity_bytes=(("DDR", 20 * 2**30),)))
        log = r.log
        first_load = next(k for k, op in enumerate(log.ops) if op[0] == "load" and op[2] == "DDR")
        block = log.ops[first_load][3][0]
        # 1. the load's block was never stored
        broken = copy.deepcopy(log)
        broken.ops = [op for op in broken.ops if not (op[0] == "store" and op[2] == "DDR" and op[3] == block)]
        assert any("does not hold it" in p for p in check_log(broken).problems)
        # 2. a tier over capacity
        broken = copy.deepcopy(log)
        lead = next(k for k, op in enumerate(broken.ops) if op[0] != "cap")
        broken.ops.insert(lead, ("cap", 0.0, "DDR", 1))
        assert any("over its capacity" in p or "shrinks to" in p for p in check_log(broken).problems)
        # 3. overlapping transfers on one link
        broken = copy.deepcopy(log)
        link, start, end, nbytes = broken.transfers[0]
        broken.transfers.append((link, start + (end - start) / 2, end + (end - start) / 2, nbytes))
        assert any("before the previous one ends" in p for p in check_log(broken).problems)
        # 4. a load before the copy arrived
        broken = copy.deepcopy(log)
        op = broken.ops[first_load]
        broken.ops[first_load] = ("load", -1.0, *op[2:])
        assert any("before its copy arrived" in p for p in check_log(broken).problems)
        assert math.isfinite(r.summary()["ttft_s"]["p99"])


class TestOutputs:
    def test_summary_is_json_and_rows_are_per_request(self, small, llama, h100):
        r = simulate(small, llama, h100, ServeConfig())
        s = json.loads(json.dumps(r.summary()))
        assert s["requests"] == small.n_requests == len(r.per_request_rows()["ttft_s"])
        rows = r.per_request_rows()
        assert np.array_equal(rows["hit_blocks"], sum(rows[f"hit_{t}"] for t in r.hit_by_tier))
        assert np.all(rows["cached_blocks"] >= rows["hit_blocks"])
        assert s["link_bytes"]["DDR->HBM"] == sum(n for link, _, _, n in r.log.transfers if link == "DDR->HBM")

    def test_queue_grows_when_overloaded(self, llama, h100):
        busy = synthetic_trace(SyntheticSpec(requests=300, seed=9, rate_per_s=200, think_time_s=0))
        one = simulate(busy, llama, h100, ServeConfig(prefill_instances=1, hbm_cache=False, cache_tiers=()))
        many = simulate(busy, llama, h100, ServeConfig(prefill_instances=32, hbm_cache=False, cache_tiers=()))
        assert one.queue_len.max() > many.queue_len.max()
        assert one.ttft_s.mean() > many.ttft_s.mean()


def test_tensor_parallel_instances_fit_big_models(small, h100):
    mixtral = load_serve_model("mixtral-8x7b")
    with pytest.raises(InfeasibleError):
        simulate(small, mixtral, h100, ServeConfig())
    r = simulate(small, mixtral, h100, ServeConfig(tensor_parallel=2))
    assert check_log(r.log).ok
    one = simulate(small, load_serve_model("llama-2-7b"), h100, ServeConfig(hbm_cache=False, cache_tiers=()))
    two = simulate(small, load_serve_model("llama-2-7b"), h100, ServeConfig(hbm_cache=False, cache_tiers=(),
                                                                            tensor_parallel=2))
    assert two.ttft_s.mean() < one.ttft_s.mean()


@pytest.mark.parametrize("policy", sorted(NON_PROMPT_LRU))
def test_non_prompt_accesses_are_lru_for(policy):
    """Why the simulator may give lower tiers an lru: on non-prompt accesses these policies are lru."""
    from core.serve.policies import make_policy

    rng = np.random.default_rng(3)
    ours, lru = make_policy(policy, 40), make_policy("lru", 40)
    for req in range(400):
        blocks = rng.integers(0, 120, rng.integers(1, 12)).tolist()
        blocks = list(dict.fromkeys(blocks))
        assert ours.access(blocks, req, prompt=False) == lru.access(blocks, req, prompt=False)
        if req % 50 == 0:
            assert ours.evict_to(30) == lru.evict_to(30)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from core.serve.policies import POLICIES  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(POLICIES), ddr_gib=st.sampled_from([0, 3, 10, 60]),
       ssd_gib=st.sampled_from([0, 5, 40]), hbm_cache=st.booleans(), inclusive=st.booleans(),
       write_through=st.booleans(), admit=st.integers(1, 3), instances=st.integers(1, 6),
       overlap=st.sampled_from(["layer", "sequential"]), selective=st.booleans(), rate=st.sampled_from([0.5, 5.0, 50.0]))
def test_any_setting_passes_the_replay_check(llama, h100, seed, policy, ddr_gib, ssd_gib, hbm_cache, inclusive,
                                             write_through, admit, instances, overlap, selective, rate):
    trace = synthetic_trace(SyntheticSpec(requests=120, seed=seed, rate_per_s=rate, system_prompt_tokens=1500,
                                          user_tokens_mean=700, output_tokens_mean=300))
    cfg = ServeConfig(policy=policy, hbm_cache=hbm_cache, tier_capacity_bytes=(("DDR", ddr_gib * 2**30),
                                                                              ("SSD", ssd_gib * 2**30)),
                      inclusive=inclusive, write_through=write_through and inclusive, admit_after=admit,
                      prefill_instances=instances, overlap=overlap, selective_load=selective)
    hw = with_capacity(h100, "HBM", 24 * 2**30)
    free = instances * (hw.capacity("HBM") - llama.weight_bytes)
    if int(trace.input_tokens.max()) * llama.kv_bytes_per_token > free:  # a prompt that cannot run: said so
        with pytest.raises(InfeasibleError, match=r"needs .* GiB of KV"):
            simulate(trace, llama, hw, cfg)
        return
    r = simulate(trace, llama, hw, cfg)
    report = check_log(r.log)
    assert report.ok, report.problems
    assert np.all(r.hit_blocks <= r.available_blocks)
    assert np.all(r.ttft_s > 0) and np.all(r.finish_s >= r.prefill_end_s)
