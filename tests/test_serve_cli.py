"""``python -m core serve``: JSON contract, timed mode, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from core.cli import main


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


class TestSequenceOnly:
    def test_unlimited_is_the_published_ceiling(self, capsys):
        out = _json(capsys, ["serve", "sample_models/traces/mooncake-synthetic.jsonl", "--json"])
        assert out["requests"] == 3993 and out["blocks_total"] == 121_877 and out["blocks_hit"] == 77_953
        assert out["prefix_hit_rate"] == pytest.approx(77_953 / 121_877)

    def test_capacity_and_policy(self, capsys):
        lru = _json(capsys, ["serve", "sample", "--capacity-blocks", "5000", "--policy", "lru", "--json"])
        ours = _json(capsys, ["serve", "sample", "--capacity-blocks", "5000", "--policy", "tierplan", "--json"])
        assert lru["capacity_blocks"] == 5000 and 0 < lru["blocks_hit"] <= ours["blocks_hit"] < 77_953

    def test_csv_says_it_has_no_reuse(self, capsys, tmp_path):
        p = tmp_path / "azure.csv"
        p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1000,5\n1,1000,5\n")
        out = _json(capsys, ["serve", str(p), "--json"])
        assert out["blocks_hit"] == 0 and "no prefix information" in out["note"]


class TestTimed:
    def test_json_summary_and_check(self, capsys):
        out = _json(capsys, ["serve", "synthetic:200:3", "--model", "llama-2-7b", "--hardware", "h100-sxm",
                             "--ddr-capacity", "32GiB", "--policy", "lru", "--check", "--json"])
        assert out["check"]["ok"] and out["requests"] == 200 and out["policy"] == "lru"
        assert out["capacity_blocks"]["DDR"] == 32 * 2**30 // (512 * 2 * 32 * 32 * 128 * 2)
        assert set(out["ttft_s"]) == {"p50", "p90", "p99", "mean"}

    @pytest.mark.parametrize("model", ["llama2-7b-decode", "sample_models/configs/llama-2-7b.json", "llama-2-7b"])
    def test_model_by_sample_key_file_or_name(self, capsys, model):
        out = _json(capsys, ["serve", "synthetic:60:1", "--model", model, "--json"])
        assert out["model"] == "llama-2-7b" and out["block_bytes"] == 512 * 2 * 32 * 32 * 128 * 2

    def test_text_output(self, capsys):
        assert main(["serve", "synthetic:100", "--model", "llama-2-7b", "--set", "DDR->HBM.bandwidth=16GB/s"]) == 0
        assert "TTFT p50" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["serve", "missing.jsonl"], "missing.jsonl: no such file"),
    (["serve", "sample", "--ddr-capacity", "64GiB"], "needs --model"),
    (["serve", "sample", "--model", "llama-2-7b", "--capacity-blocks", "5"], "--capacity-blocks: applies to the sequence-only"),
    (["serve", "synthetic:50", "--model", "nope"], "cannot read model config"),
    (["serve", "synthetic:50", "--model", "llama-2-7b", "--pool-capacity", "1GiB"], "has no POOL tier"),
    (["serve", "synthetic:50", "--model", "llama-2-7b", "--write-through"], "write-through keeps a copy"),
    (["serve", "synthetic:x"], "expected synthetic[:REQUESTS[:SEED]]"),
    (["serve", "synthetic:50", "--model", "llama-2-7b", "--ddr-capacity", "1TiB"], "DDR.capacity: a cache of 1024.0 GiB does not fit in DDR (256.0 GiB)"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_bad_trace_line(capsys, tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1]}\n')
    assert main(["serve", str(p)]) == 2
    assert "line 1: hash_ids: has 1 block ids but input_length 600 needs ceil(600/512) = 2" in capsys.readouterr().err
