"""Graph summaries."""

from __future__ import annotations

import json

from core.graph import Graph, Op, Tensor
from core.info import format_summary, graph_summary
from core.sources.samples import load_sample, tiny_graph

GiB = 2**30


def test_tiny_summary() -> None:
    s = graph_summary(tiny_graph())
    assert s.params_total == s.params_active == 3 * GiB // 2
    assert s.op_count == 10 and s.tensor_count == 16
    assert s.bytes_by_kind == {"weight": 3 * GiB, "activation": 6 * GiB, "gradient": 3 * GiB,
                               "optimizer_state": 6 * GiB, "input": GiB}
    assert s.largest_tensors[0] == ("adam1", "optimizer_state", 2 * GiB)
    assert s.ops_by_category == {"matmul": 6, "optimizer": 3, "loss": 1}
    assert s.ops_by_phase == {"forward": 4, "backward": 3, "optimizer": 3}
    assert s.no_offload_peak_bytes == 15 * GiB
    json.dumps(s.to_dict())
    text = format_summary(s)
    assert "1.61 B" in text and "ops             10" in text and "no-offload peak 15 GiB" in text


def test_moe_active_params() -> None:
    s = graph_summary(load_sample("mixtral-8x7b-prefill"))
    assert s.params_active < s.params_total
    assert len(s.largest_tensors) == 10


def test_graph_without_meta() -> None:
    g = Graph("bare", (Tensor("a", 10, "input", False),), (Op("op", ("a",), (), time_s=1.0),))
    s = graph_summary(g)
    assert s.params_total is None and s.workload is None
    assert "unknown" in format_summary(s)
