"""Re-check the reason of an infeasible result against the graph and the hardware (issue #9).

A property test used to accept any non-empty message, which a planner that gave up whenever memory ran
short would pass. Here the reason must hold: an op whose own footprint exceeds the compute tier, persistent
bytes above every tier, a no-offload peak above the tier. Any other reason is a claim about the policy's own
search; for the default policy it is then checked by completeness (no other policy finds a valid plan), and
for a baseline its figures must be the tier's real capacity and more than it. Structured reasons
(``InfeasibleError.reason`` with ``op``, ``tier``, ``need_bytes``, ``have_bytes``) are checked first.
"""

from __future__ import annotations

import re
from typing import Any

from core.errors import InfeasibleError
from core.graph import Graph
from core.hardware import Hardware
from core.liveness import analyze
from core.units import format_bytes, parse_bytes

__all__ = ["check_infeasible", "check_infeasible_message"]

_SIZE = r"([\d.]+ (?:[KMGTP]i)?B)"


def _footprint(graph: Graph, op_id: str) -> int:
    return int(analyze(graph).required_bytes[graph.op_index[op_id]])


def _same_size(text: str, nbytes: int) -> bool:
    """``text`` is how ``format_bytes`` shows ``nbytes`` (the messages round to 3 digits)."""
    return text == format_bytes(nbytes)


def check_infeasible_message(graph: Graph, hw: Hardware, message: str) -> str | None:
    """Verify a reason that graph and hardware alone decide; return its kind, or None if it is not one."""
    assert message and "Traceback" not in message and "\n" not in message, message
    ct = hw.compute_tier
    cap = hw.capacity(ct)
    m = re.search(rf"op '([^']+)' needs {_SIZE} of inputs and outputs in (\S+) at once", message)
    if m:
        need = _footprint(graph, m.group(1))
        assert m.group(3) == ct and need > cap, (message, need, cap)
        assert _same_size(m.group(2), need), (message, need)
        return "op-footprint"
    m = re.search(rf"op '([^']+)' alone needs {_SIZE} in (\S+) but the budget is {_SIZE}", message)
    if m:
        need = _footprint(graph, m.group(1))
        assert _same_size(m.group(2), need) and need > parse_bytes(m.group(4)) * (1 - 1e-3), (message, need)
        return "op-footprint"
    m = re.search(rf"persistent tensors .*need {_SIZE} but all tiers together hold {_SIZE}", message)
    if m:
        total = sum(t.capacity_bytes for t in hw.tiers)
        assert graph.persistent_bytes > total and _same_size(m.group(2), total), (message, total)
        return "persistent-bytes"
    m = re.search(rf"the persistent tensors need {_SIZE} but (\S+) holds {_SIZE}", message)
    if m:
        assert graph.persistent_bytes > cap and m.group(2) == ct, (message, cap)
        return "persistent-bytes"
    m = re.search(rf"without offloading, (\S+) peaks at {_SIZE} while op '([^']+)' runs", message)
    if m:
        live = analyze(graph)
        worst = int(live.keep_bytes[graph.op_index[m.group(3)]])
        assert m.group(1) == ct and worst > cap and _same_size(m.group(2), worst), (message, worst, cap)
        return "no-offload-peak"
    return None


def _check_claim(graph: Graph, hw: Hardware, message: str) -> None:
    """A policy's own claim: every op it names exists, and 'TIER needs X ... holds Y' has Y = TIER's
    capacity and X > Y."""
    for op in re.findall(r"op '([^']+)'", message):
        assert op in graph.op_index, (message, op)
    for tensor in re.findall(r"(?:span|tensor) of '([^']+)'|tensor '([^']+)'", message):
        name = next(t for t in tensor if t)
        assert name in graph.tensor_by_id, (message, name)
    m = re.search(rf"(\S+) (?:still )?needs {_SIZE} .*?holds {_SIZE}", message)
    if m and m.group(1) in hw.tier_by_name:
        assert _same_size(m.group(3), hw.capacity(m.group(1))), (message, hw.capacity(m.group(1)))
        assert parse_bytes(m.group(2)) > parse_bytes(m.group(3)) * (1 - 1e-3), message


def check_infeasible(graph: Graph, hw: Hardware, exc: InfeasibleError, policy: str = "tierplan",
                     params: dict[str, Any] | None = None) -> str:
    """Assert that ``exc`` (raised by ``policy`` on graph, hw) gives a reason that holds; return its kind."""
    message = str(exc)
    reason = getattr(exc, "reason", None)
    kind = _check_structured(graph, hw, exc) if isinstance(reason, str) else None
    if kind is None:
        kind = check_infeasible_message(graph, hw, message)
    if kind is not None:
        return kind
    _check_claim(graph, hw, message)
    if policy == "tierplan" and not params:
        witness = _valid_plan_by_another_policy(graph, hw)
        assert witness is None, f"the default policy gave up ({message}) but '{witness}' finds a valid plan"
        return "no-policy-finds-a-plan"
    return "policy-claim"


def _check_structured(graph: Graph, hw: Hardware, exc: InfeasibleError) -> str | None:
    """The structured reason (``reason``, ``op``, ``tier``, ``need_bytes``, ``have_bytes``; core.errors):
    the figures must be the graph's and the hardware's, and the kinds graph and hardware decide must hold."""
    reason = str(getattr(exc, "reason", ""))
    op, tier = getattr(exc, "op", None), getattr(exc, "tier", None)
    need, have = getattr(exc, "need_bytes", None), getattr(exc, "have_bytes", None)
    if op is not None:
        assert op in graph.op_index, (str(exc), op)
    if tier is not None:
        assert tier in hw.tier_by_name, (str(exc), tier)
    if need is not None and have is not None:
        assert need > have, str(exc)
    if reason == "op_footprint":
        assert op is not None, str(exc)
        cap = hw.capacity(tier or hw.compute_tier)
        footprint = _footprint(graph, op)
        assert footprint > cap, (str(exc), footprint, cap)
        assert need in (None, footprint) and have in (None, cap), (str(exc), footprint, cap)
        return "op-footprint"
    if reason == "persistent_total":
        total = sum(t.capacity_bytes for t in hw.tiers)
        assert graph.persistent_bytes > total, (str(exc), graph.persistent_bytes, total)
        assert need in (None, graph.persistent_bytes) and have in (None, total), str(exc)
        return "persistent-bytes"
    if tier is not None and have is not None:
        assert hw.capacity(tier) == have, (str(exc), hw.capacity(tier))
    return None  # a policy's own claim: checked by its wording and by completeness


def _valid_plan_by_another_policy(graph: Graph, hw: Hardware) -> str | None:
    from core.planner import make_plan
    from core.policies import list_policies
    from core.validate import validate_plan

    for info in list_policies():
        if info.key in ("tierplan", "optimal"):
            continue
        try:
            plan = make_plan(graph, hw, policy=info.key)
        except InfeasibleError:
            continue
        if validate_plan(graph, plan).ok:
            return info.key
    return None
