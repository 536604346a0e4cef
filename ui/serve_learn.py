"""The Learn page's walk through prefix caching on a ten-request trace (one function call from pages/learn.py).

:func:`story` is pure: it replays the hand-made trace with the real policies (``core.serve.capacity``) and
writes the sentences from the numbers it got, so the text cannot drift from the table (a test checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from core.serve.capacity import run_capacity
from core.serve.trace import BLOCK_TOKENS, Trace, parse_mooncake

__all__ = ["TEN_REQUESTS", "Story", "ten_request_trace", "story", "prefix_caching_section"]

#: (who, block ids). Blocks 1–2 are a shared system prompt; a conversation's next turn extends its history.
TEN_REQUESTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Ann, turn 1", (1, 2, 10, 11)),
    ("Ben, turn 1", (1, 2, 20)),
    ("Ann, turn 2", (1, 2, 10, 11, 12, 13)),
    ("Doc question", (30, 31, 32)),
    ("Ben, turn 2", (1, 2, 20, 21, 22)),
    ("Cat, turn 1", (1, 2, 40)),
    ("Ann, turn 3", (1, 2, 10, 11, 12, 13, 14)),
    ("Doc, another question", (30, 31, 33)),
    ("Ben, turn 3", (1, 2, 20, 21, 22, 23)),
    ("Cat, turn 2", (1, 2, 40, 41)),
)


def ten_request_trace() -> Trace:
    lines = [json.dumps({"timestamp": 1000 * i, "input_length": BLOCK_TOKENS * len(ids), "output_length": 64,
                         "hash_ids": list(ids)}) for i, (_, ids) in enumerate(TEN_REQUESTS)]
    return parse_mooncake("\n".join(lines), source="ten-requests")


@dataclass(frozen=True)
class Story:
    """Per-request hits of an unlimited cache, of ``lru`` and ``belady`` with ``capacity`` blocks; the text."""

    capacity: int
    blocks: tuple[int, ...]
    unlimited: tuple[int, ...]
    lru: tuple[int, ...]
    belady: tuple[int, ...]
    tierplan: tuple[int, ...]
    sentences: tuple[str, ...]


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f} %" if b else "0 %"


def story(capacity: int) -> Story:
    """Replay the ten requests and explain what happened, from the numbers."""
    trace = ten_request_trace()
    blocks = tuple(int(x) for x in np.diff(trace.block_offsets))
    total = sum(blocks)
    unlimited = run_capacity(trace, "lru", None)
    lru = run_capacity(trace, "lru", capacity)
    belady = run_capacity(trace, "belady", capacity)
    tierplan = run_capacity(trace, "tierplan", capacity)
    distinct = int(np.unique(trace.block_ids).shape[0])
    readers_of_first = sum(1 for _, ids in TEN_REQUESTS if ids[0] == 1)
    best = int(np.argmax(unlimited.hits))
    first = [k for k, h in enumerate(unlimited.hits) if h == 0]
    left = blocks[best] - int(unlimited.hits[best])
    sentences = [
        f"The ten prompts hold {total} blocks of {BLOCK_TOKENS} tokens, {distinct} of them distinct. With an unlimited "
        f"cache {unlimited.blocks_hit} blocks ({_pct(unlimited.blocks_hit, total)}) are prefix hits: that is the "
        f"reuse ceiling of this trace, and no policy can beat it.",
        f"The shared system prompt (blocks 1 and 2) starts {readers_of_first} of the ten prompts, so an unlimited "
        f"cache computes it once and serves it {readers_of_first - 1} times; requests {', '.join(str(k + 1) for k in first)} find nothing "
        "cached because nothing before them began the same way.",
        f"Request {best + 1} ({TEN_REQUESTS[best][0]}) gains the most: {int(unlimited.hits[best])} of its "
        f"{blocks[best]} blocks are its conversation's history, so only {left} {'block' if left == 1 else 'blocks'} "
        "must be prefilled.",
        f"With room for {capacity} {'block' if capacity == 1 else 'blocks'}, the reference LRU keeps {lru.blocks_hit} hits "
        f"({_pct(lru.blocks_hit, total)}), Tierplan's policy {tierplan.blocks_hit} and the offline optimum (Belady: "
        f"evict the block needed farthest in the future) {belady.blocks_hit} ({_pct(belady.blocks_hit, total)}); "
        + ("at this size the cache holds everything that is ever reused." if lru.blocks_hit == unlimited.blocks_hit
           else f"LRU loses {unlimited.blocks_hit - lru.blocks_hit} hits to evictions of blocks that were needed again."),
    ]
    return Story(capacity, blocks, tuple(int(h) for h in unlimited.hits), tuple(int(h) for h in lru.hits),
                 tuple(int(h) for h in belady.hits), tuple(int(h) for h in tierplan.hits), tuple(sentences))


def prefix_caching_section() -> None:
    """Draw the section (Streamlit): a capacity slider, the per-request table and the sentences."""
    import pandas as pd
    import streamlit as st

    st.markdown("""
### 6 · Prefix caching across requests (the serving half)
When a model serves many users, prompts share their beginnings: a system prompt, a document, the earlier
turns of a conversation. The KV cache of those leading **blocks** (512 tokens each) can be kept — in HBM,
then host DDR, then SSD — and *loaded* instead of recomputed. A request's hit is its longest run of leading
blocks already cached. Here are ten requests; move the slider to shrink the cache.
""")
    cap = st.slider("Cache capacity (blocks)", 1, 20, 6, key="learn:serve:cap")
    s = story(cap)
    st.dataframe(pd.DataFrame({
        "request": [f"{k + 1}. {who}" for k, (who, _) in enumerate(TEN_REQUESTS)],
        "blocks": [" ".join(str(b) for b in ids) for _, ids in TEN_REQUESTS],
        "hit, unlimited": s.unlimited,
        f"hit, LRU ({cap})": s.lru,
        f"hit, Tierplan ({cap})": s.tierplan,
        f"hit, Belady ({cap})": s.belady,
    }), hide_index=True)
    st.markdown("\n\n".join(s.sentences))
    st.markdown("The **Serve** page does this on real traces (Mooncake's published one is built in), with a model "
                "and hardware: which tier each hit comes from, how long the loads take next to the prefill they "
                "save, and what that does to time to first token.")
