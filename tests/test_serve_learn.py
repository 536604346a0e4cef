"""The Learn page's ten-request walk through prefix caching: every sentence is true of the numbers shown."""

from __future__ import annotations

import re

import pytest

from core.serve.capacity import run_capacity
from ui.serve_learn import TEN_REQUESTS, story, ten_request_trace


def _numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


@pytest.mark.parametrize("capacity", [1, 2, 4, 6, 9, 13, 20])
def test_sentences_match_an_independent_count(capacity):
    s = story(capacity)
    trace = ten_request_trace()
    total = sum(len(ids) for _, ids in TEN_REQUESTS)
    distinct = len({b for _, ids in TEN_REQUESTS for b in ids})
    # unlimited: block k hits when blocks 0..k of the prompt all appeared, at the same positions, earlier
    seen: set[tuple[int, ...]] = set()
    unlimited = []
    for _, ids in TEN_REQUESTS:
        h = 0
        while h < len(ids) and tuple(ids[:h + 1]) in seen:
            h += 1
        unlimited.append(h)
        seen.update(tuple(ids[:k + 1]) for k in range(len(ids)))
    assert s.unlimited == tuple(unlimited)
    hit = sum(unlimited)
    one, two, three, four = s.sentences
    assert f"hold {total} blocks" in one and f"{distinct} of them distinct" in one
    assert f"{hit} blocks ({100 * hit / total:.0f} %) are prefix hits" in one
    starts = [k for k, (_, ids) in enumerate(TEN_REQUESTS) if ids[0] == 1]
    served = sum(1 for k in starts if unlimited[k] >= 2)
    assert f"starts {len(starts)} of the ten" in two and f"serves it {served} times" in two
    nothing = [k + 1 for k, h in enumerate(unlimited) if h == 0]
    assert two.endswith("began the same way.") and _numbers(two.split("requests ")[1].split(" find")[0]) == nothing
    best = max(range(10), key=lambda k: (unlimited[k], -k))
    assert three.startswith(f"Request {best + 1} ")
    assert f"only {len(TEN_REQUESTS[best][1]) - unlimited[best]} block" in three
    lru = run_capacity(trace, "lru", capacity).blocks_hit
    belady = run_capacity(trace, "belady", capacity).blocks_hit
    assert f"LRU keeps {lru} hits" in four and f"(Belady: evict the block needed farthest in the future) {belady}" in four
    assert sum(s.lru) == lru and sum(s.belady) == belady and sum(s.tierplan) >= lru
    assert belady >= lru
    if lru == hit:
        assert "holds everything that is ever reused" in four
    else:
        assert f"LRU loses {hit - lru} hits" in four


def test_learn_page_shows_the_section(navigation_pages):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.query_params["model"] = "tiny"
    at.run()
    at.switch_page("pages/learn.py").run()
    assert not at.exception
    at.slider(key="learn:serve:cap").set_value(3).run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert story(3).sentences[3] in text
