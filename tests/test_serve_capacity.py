"""Sequence-only capacity analysis: the reference lru exactly as specified, the other policies, the ceiling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import InputError
from core.serve.capacity import run_capacity
from core.serve.policies import POLICIES, FutureIndex, make_policy
from core.serve.trace import SyntheticSpec, load_trace, parse_mooncake, sample_trace_path, synthetic_trace


@pytest.fixture(scope="module")
def shipped():
    return load_trace(sample_trace_path())


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_trace(SyntheticSpec(requests=1500, seed=11))


def _trace(rows: list[list[int]]):
    lines = [json.dumps({"timestamp": i, "input_length": 512 * len(r), "output_length": 1, "hash_ids": r})
             for i, r in enumerate(rows)]
    return parse_mooncake("\n".join(lines))


def _lru_by_the_book(trace, capacity: int) -> int:
    """The issue's definition, written as plainly as possible: a list ordered by last touch."""
    order: list[int] = []  # least recently touched first
    hits = 0
    for i in range(trace.n_requests):
        blocks = trace.blocks(i).tolist()
        for b in blocks:
            if b not in order:
                break
            hits += 1
        for b in reversed(blocks):
            if b in order:
                order.remove(b)
            order.append(b)
        while len(order) > capacity:
            order.pop(0)
    return hits


class TestReferenceLru:
    def test_hand_example(self):
        # cap 3: r0 [1,2,3] -> r1 [1,2,4]: hits 2; cache after r1 = {1,2,4} (3 was least recent)
        # r2 [1,2,3]: hits 2 (3 evicted)
        t = _trace([[1, 2, 3], [1, 2, 4], [1, 2, 3]])
        r = run_capacity(t, "lru", 3)
        assert r.hits.tolist() == [0, 2, 2]
        assert r.blocks_hit == 4 and r.blocks_total == 9

    def test_heads_outlive_tails(self):
        # cap 2 after [5,6,7]: the tail 7 is touched first, so 5 and 6 stay
        t = _trace([[5, 6, 7], [5, 6]])
        assert run_capacity(t, "lru", 2).hits.tolist() == [0, 2]

    def test_hit_stops_at_first_missing_block(self):
        t = _trace([[1, 2, 3], [9, 2, 3], [1, 2, 3]])
        assert run_capacity(t, "lru", 10).hits.tolist() == [0, 0, 3]

    @pytest.mark.parametrize("capacity", [1, 7, 40, 200])
    def test_matches_the_plain_definition(self, capacity):
        t = synthetic_trace(SyntheticSpec(requests=120, seed=5, user_tokens_mean=700, system_prompt_tokens=1500))
        assert run_capacity(t, "lru", capacity).blocks_hit == _lru_by_the_book(t, capacity)


class TestPublishedReference:
    def test_unlimited_cache_is_63_96_percent(self, shipped):
        r = run_capacity(shipped, "lru", None)
        assert (r.requests, r.blocks_total, r.blocks_distinct) == (3993, 121_877, 43_924)
        assert round(100 * r.prefix_hit_rate, 2) == 63.96

    @pytest.mark.parametrize("policy", POLICIES)
    def test_every_policy_reaches_the_ceiling_with_room_for_everything(self, shipped, policy):
        assert run_capacity(shipped, policy, 43_924).blocks_hit == run_capacity(shipped, "lru", None).blocks_hit


class TestPolicies:
    @pytest.mark.parametrize("policy", POLICIES)
    def test_capacity_respected_and_hits_sane(self, synthetic, policy):
        cache = make_policy(policy, 50, trace=synthetic)
        for i in range(200):
            cache.access(synthetic.blocks(i).tolist(), i)
            assert len(cache) <= 50
        r = run_capacity(synthetic, policy, 300)
        assert 0 <= r.blocks_hit <= run_capacity(synthetic, "lru", None).blocks_hit

    def test_zero_capacity_hits_nothing(self, synthetic):
        for policy in POLICIES:
            assert run_capacity(synthetic, policy, 0).blocks_hit == 0, policy

    def test_unknown_policy(self, synthetic):
        with pytest.raises(InputError, match="unknown policy 'mru'"):
            run_capacity(synthetic, "mru", 10)

    def test_future_index(self):
        t = _trace([[1, 2], [3], [1, 4], [2]])
        f = FutureIndex(t)
        assert f.next_req.tolist() == [2, 3, 4, 4, 4, 4]
        f.advance(0)
        assert f.next_use(1, 0) == 2 and f.next_use(4, 0) == 2 and f.next_use(9, 0) == 4

    def test_belady_is_a_ceiling(self, shipped):
        for cap in (2_000, 10_000):
            best = run_capacity(shipped, "belady", cap).blocks_hit
            for policy in POLICIES:
                assert run_capacity(shipped, policy, cap).blocks_hit <= best, (policy, cap)


class TestTierplanDominatesLru:
    """The default must hit at least as often as the reference at every capacity."""

    FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

    @pytest.mark.parametrize("which", ["shipped", "synthetic", "bursty"])
    def test_sweep(self, which, shipped, synthetic):
        trace = {"shipped": shipped, "synthetic": synthetic,
                 "bursty": synthetic_trace(SyntheticSpec(requests=1200, seed=7, arrivals="bursty", system_prompts=16,
                                                         turns_mean=5))}[which]
        distinct = int(np.unique(trace.block_ids).shape[0])
        gains = []
        for f in self.FRACTIONS:
            cap = max(1, int(f * distinct))
            lru = run_capacity(trace, "lru", cap).blocks_hit
            ours = run_capacity(trace, "tierplan", cap).blocks_hit
            assert ours >= lru, (which, cap, ours, lru)
            gains.append(ours - lru)
        assert max(gains) > 0  # and it is not merely lru


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_prompts = st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=8), min_size=1, max_size=25)


def _chained(rows: list[list[int]]) -> list[list[int]]:
    """Give random rows prefix semantics: a block's id is determined by the whole prefix up to it."""
    ids: dict[tuple[int, ...], int] = {}
    return [[ids.setdefault(tuple(r[:k + 1]), len(ids)) for k in range(len(r))] for r in rows]


@settings(max_examples=60, deadline=None)
@given(rows=_prompts, capacity=st.integers(0, 40))
def test_lru_matches_the_definition_on_random_traces(rows, capacity):
    t = _trace(_chained(rows))
    assert run_capacity(t, "lru", capacity).blocks_hit == _lru_by_the_book(t, capacity)


@settings(max_examples=40, deadline=None)
@given(rows=_prompts, capacity=st.integers(1, 40), policy=st.sampled_from(POLICIES))
def test_every_policy_within_capacity_and_ceiling(rows, capacity, policy):
    t = _trace(_chained(rows))
    cache = make_policy(policy, capacity, trace=t)
    for i in range(t.n_requests):
        cache.access(t.blocks(i).tolist(), i)
        assert len(cache) <= capacity
    assert run_capacity(t, policy, capacity).blocks_hit <= run_capacity(t, "lru", None).blocks_hit
    assert run_capacity(t, policy, 10**6).blocks_hit == run_capacity(t, "lru", None).blocks_hit
