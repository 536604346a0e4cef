"""The plan's JSON contract for the fields the order refinement and the bound add."""

from __future__ import annotations

import json

import pytest

from core.errors import InputError
from core.plan import ComputeEvent, Plan, plan_from_dict, plan_to_dict

HW = {"compute": {"peak_flops": 1e14}, "compute_tier": "HBM", "tiers": [{"name": "HBM", "capacity_bytes": 10}],
      "links": []}
EVENTS = (ComputeEvent("b", 0.0, 1.0, "HBM"), ComputeEvent("a", 1.0, 2.0, "HBM"))


def _round_trip(plan: Plan) -> Plan:
    return plan_from_dict(json.loads(json.dumps(plan_to_dict(plan))))


class TestOptionalFields:
    def test_absent_by_default(self) -> None:
        raw = plan_to_dict(Plan("g", "hand", HW, {}, EVENTS))
        assert not {"order", "order_moves", "lower_bound_s", "gap_to_bound"} & set(raw)
        back = plan_from_dict(raw)
        assert back.order is None and back.lower_bound_s is None and back.gap_to_bound is None
        assert back.order_moves == ()

    def test_round_trip(self) -> None:
        moves = ({"op": "b", "from_index": 1, "to_index": 0, "reason": "runs as soon as its input is ready"},)
        plan = Plan("g", "hand", HW, {}, EVENTS, order=("b", "a"), lower_bound_s=1.5, gap_to_bound=2 / 1.5 - 1,
                    order_moves=moves)
        back = _round_trip(plan)
        assert back.order == ("b", "a")
        assert back.lower_bound_s == 1.5
        assert back.gap_to_bound == pytest.approx(1 / 3)
        assert back.order_moves == moves
        assert plan_to_dict(plan)["order"] == ["b", "a"]

    @pytest.mark.parametrize(("order", "field"), [("ab", "order"), (["a", 3], "order[1]"), (["a", "a"], "order[1]")])
    def test_bad_order(self, order: object, field: str) -> None:
        raw = plan_to_dict(Plan("g", "hand", HW, {}, EVENTS)) | {"order": order}
        with pytest.raises(InputError) as err:
            plan_from_dict(raw, source="p.json")
        assert err.value.field == field
        assert "p.json" in str(err.value)

    def test_bad_bound(self) -> None:
        raw = plan_to_dict(Plan("g", "hand", HW, {}, EVENTS)) | {"lower_bound_s": "1 s"}
        with pytest.raises(InputError, match="expected a number"):
            plan_from_dict(raw)


def test_bulk_event_dicts_match_the_one_by_one_form() -> None:
    """plan_to_dict's bulk event conversion gives exactly what _event_to_dict gives, in order."""
    from core.plan import ComputeEvent, FreeEvent, TransferEvent, _event_to_dict, _events_to_dicts

    events = [ComputeEvent("f", 0.0, 1.5, "HBM"), TransferEvent("a", "HBM", "DDR", 1.5, 2.25),
              ComputeEvent("f", 2.0, 3.0, "HBM", True), FreeEvent("a", "HBM", 2.25), ComputeEvent("g", 3, 4, "DDR")]
    assert _events_to_dicts(events) == [_event_to_dict(e) for e in events]
    assert [d["type"] for d in _events_to_dicts(events)] == ["compute", "transfer", "recompute", "free", "compute"]
