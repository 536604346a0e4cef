"""The explicit policy registry: every built-in policy, in the order the app shows them.

Implementations never import this module (they import :mod:`core.policies.base`), so there is no cycle:
registry -> implementations -> base.
"""

from __future__ import annotations

from core.errors import InputError
from core.policies.base import PolicyInfo
from core.policies.capuchin import CAPUCHIN
from core.policies.hyperoffload import HYPEROFFLOAD_DISTANCE
from core.policies.mindspore_gsm import MINDSPORE_GSM
from core.policies.none import NONE
from core.policies.tierplan import TIERPLAN
from core.policies.vdnn import VDNN
from core.policies.zero_offload import ZERO_OFFLOAD

__all__ = ["POLICIES", "BASELINES", "list_policies", "get_policy"]

#: key -> policy, in display order
POLICIES: dict[str, PolicyInfo] = {p.key: p for p in (
    TIERPLAN, NONE, MINDSPORE_GSM, HYPEROFFLOAD_DISTANCE, VDNN, ZERO_OFFLOAD, CAPUCHIN)}

#: the baselines whose plans are also candidates of Tierplan's portfolio (``none`` only ever fits when
#: nothing has to move, which the portfolio finds itself)
BASELINES: tuple[str, ...] = (MINDSPORE_GSM.key, HYPEROFFLOAD_DISTANCE.key, VDNN.key, ZERO_OFFLOAD.key, CAPUCHIN.key)


def list_policies() -> tuple[PolicyInfo, ...]:
    """Every built-in policy, Tierplan first."""
    return tuple(POLICIES.values())


def get_policy(key: str) -> PolicyInfo:
    """The policy named ``key``, or an InputError listing the choices."""
    try:
        return POLICIES[key]
    except KeyError:
        raise InputError(f"unknown policy {key!r}; choose one of {', '.join(POLICIES)}", field="policy") from None
