"""Traces: Mooncake JSONL, Azure CSV and the synthetic generator; every bad trace gets one clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import InputError
from core.serve.trace import (
    BLOCK_TOKENS,
    SyntheticSpec,
    load_trace,
    parse_csv,
    parse_mooncake,
    sample_trace_path,
    summarize,
    synthetic_trace,
)


def _line(ts: float = 0, n_in: int = 1000, n_out: int = 10, ids: list[int] | None = None) -> str:
    return json.dumps({"timestamp": ts, "input_length": n_in, "output_length": n_out,
                       "hash_ids": [0, 1] if ids is None else ids})


class TestShippedTrace:
    def test_published_counts(self):
        trace = load_trace(sample_trace_path())
        assert trace.n_requests == 3993
        assert trace.n_blocks == 121_877
        assert np.unique(trace.block_ids).shape[0] == 43_924
        assert trace.input_tokens.mean() == pytest.approx(15_325, abs=1)

    def test_reuse_ceiling_is_the_published_63_96_percent(self):
        s = summarize(load_trace(sample_trace_path()))
        assert round(100 * s.reuse_ceiling, 2) == 63.96
        assert s.has_reuse and s.note == ""

    def test_licence_ships_with_it(self):
        licence = sample_trace_path().parent / "LICENSE-APACHE-Mooncake"
        assert "Apache License" in licence.read_text()
        assert "mooncake-synthetic.jsonl" in (sample_trace_path().parent / "README.md").read_text()


class TestMooncakeErrors:
    @pytest.mark.parametrize(("lines", "needle"), [
        ([_line(), "{not json"], "t.jsonl: line 2: not valid JSON"),
        ([json.dumps({"timestamp": 0, "input_length": 5, "hash_ids": [0]})], "line 1: missing required field 'output_length'"),
        ([_line(n_in=-4, ids=[])], "line 1: input_length: must be >= 0"),
        ([_line(n_in=1500)], "line 1: hash_ids: has 2 block ids but input_length 1500 needs ceil(1500/512) = 3"),
        ([_line(ts=10), _line(ts=5)], "line 2: timestamp: not sorted by time"),
        ([_line(ids=[0, "x"])], "line 1: hash_ids: expected a list of whole numbers"),
        ([_line(n_out=1.5)], "line 1: output_length: expected a whole number"),
        (["[1, 2]"], "line 1: expected a JSON object"),
        ([""], "no requests"),
    ])
    def test_one_clear_message(self, lines, needle):
        with pytest.raises(InputError) as err:
            parse_mooncake("\n".join(lines), source="t.jsonl")
        assert needle in err.value.message
        assert "\n" not in err.value.message

    def test_good_file_round_trip(self):
        t = parse_mooncake("\n".join([_line(0, 1024, 3, [7, 8]), _line(1500, 513, 2, [7, 9])]))
        assert t.arrival_s.tolist() == [0.0, 1.5]
        assert t.blocks(1).tolist() == [7, 9]
        assert t.block_offsets.tolist() == [0, 2, 4]


class TestCsv:
    def test_azure_rows(self):
        text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1100,20\n"
                "2023-11-16 18:15:47.1805900,600,5\n")
        t = parse_csv(text, source="azure.csv")
        assert t.n_requests == 2 and not t.has_reuse
        assert t.arrival_s[1] == pytest.approx(0.5)
        assert t.n_blocks == 3 + 2
        s = summarize(t)
        assert s.reuse_ceiling == 0.0 and "no prefix information" in s.note

    def test_bad_cell_names_line_and_column(self):
        with pytest.raises(InputError, match=r"a.csv: line 3: GeneratedTokens: expected a whole number"):
            parse_csv("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,5\n1,5,x\n", source="a.csv")
        with pytest.raises(InputError, match="missing column 'ContextTokens'"):
            parse_csv("TIMESTAMP,Tokens,GeneratedTokens\n0,5,5\n", source="a.csv")

    def test_load_trace_detects_csv(self, tmp_path):
        p = tmp_path / "trace.csv"
        p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,5\n")
        assert load_trace(p).format == "csv"


class TestSynthetic:
    def test_seeded_and_sorted(self):
        a = synthetic_trace(SyntheticSpec(requests=300, seed=3))
        b = synthetic_trace(SyntheticSpec(requests=300, seed=3))
        assert a.digest() == b.digest()
        assert a.n_requests == 300
        assert np.all(np.diff(a.arrival_s) >= 0)
        assert synthetic_trace(SyntheticSpec(requests=300, seed=4)).digest() != a.digest()

    def test_block_counts_match_lengths(self):
        t = synthetic_trace(SyntheticSpec(requests=400, seed=1))
        need = -(-t.input_tokens // BLOCK_TOKENS)
        assert np.array_equal(np.diff(t.block_offsets), need)

    def test_turns_extend_their_history_and_prompts_are_shared(self):
        t = synthetic_trace(SyntheticSpec(requests=400, seed=1, shared_fraction=1.0, system_prompts=1,
                                          system_prompt_tokens=2048))
        # every request starts with the 4 full blocks of the one system prompt
        heads = {tuple(t.blocks(i)[:4].tolist()) for i in range(t.n_requests)}
        assert len(heads) == 1
        # some request's generated blocks reappear as prompt blocks of a later one (the next turn)
        prompt = set(t.block_ids.tolist())
        assert any(b in prompt for b in t.gen_ids.tolist())
        assert summarize(t).reuse_ceiling > 0.3

    def test_bursty_arrivals_are_burstier(self):
        p = synthetic_trace(SyntheticSpec(requests=600, seed=2, turns_mean=1, arrivals="poisson"))
        b = synthetic_trace(SyntheticSpec(requests=600, seed=2, turns_mean=1, arrivals="bursty"))
        cv = [np.std(np.diff(x.arrival_s)) / np.mean(np.diff(x.arrival_s)) for x in (p, b)]
        assert cv[1] > cv[0]

    def test_bad_spec(self):
        with pytest.raises(InputError, match="synthetic trace: rate_per_s"):
            synthetic_trace(SyntheticSpec(rate_per_s=0))
