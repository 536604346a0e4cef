"""Domain exceptions: every message names the file, the field and the problem so a user can act on it."""

from __future__ import annotations

from typing import Literal

__all__ = ["TierplanError", "InputError", "InfeasibleError", "InfeasibleReason", "PlanInvalidError", "PlanBugError"]

#: Why a plan is impossible: ``op_footprint`` (one op's own inputs and outputs exceed the compute tier),
#: ``persistent_total`` (persistent bytes exceed all tiers together), ``policy`` (this policy's rule or
#: search found no plan at this capacity; another may), ``lower_capacity`` (no lower tier has room for a
#: copy the policy must move), ``placement`` (a host-op placement the scheduler cannot honour).
InfeasibleReason = Literal["op_footprint", "persistent_total", "policy", "lower_capacity", "placement"]


class TierplanError(Exception):
    """Base of every error Tierplan raises on purpose (never a bug)."""


class InputError(TierplanError):
    """A file or value supplied by the user is malformed.

    ``source`` is the file (or "<upload>"), ``field`` a dotted path inside it such as
    ``ops[3].inputs[0]``; both are optional so the message stays one readable line.
    """

    def __init__(self, problem: str, *, source: str | None = None, field: str | None = None) -> None:
        self.problem = problem
        self.source = source
        self.field = field
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = ": ".join(part for part in (self.source, self.field) if part)
        text = f"{where}: {self.problem}" if where else self.problem
        # One line whatever the user's names contain (an id with a newline must not break the report).
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def with_source(self, source: str) -> InputError:
        """The same error attributed to ``source`` (loaders learn the file name late)."""
        return InputError(self.problem, source=source, field=self.field)


class InfeasibleError(TierplanError):
    """The graph cannot run on the hardware under any plan this policy can make; the message says why.

    ``reason`` classifies it (:data:`InfeasibleReason`); ``op`` (an op id), ``tier``, ``need_bytes`` and
    ``have_bytes`` carry the figures the message states, so a caller or a test can re-check the claim
    against the graph and the hardware instead of parsing the text.
    """

    def __init__(self, message: str, *, reason: InfeasibleReason = "policy", op: str | None = None,
                 tier: str | None = None, need_bytes: int | None = None, have_bytes: int | None = None) -> None:
        super().__init__(message)
        self.reason: InfeasibleReason = reason
        self.op = op
        self.tier = tier
        self.need_bytes = need_bytes
        self.have_bytes = have_bytes


class PlanInvalidError(TierplanError):
    """A plan breaks the physical rules (raised by callers that want an exception from a validation report)."""


class PlanBugError(Exception):
    """A plan the planner built breaks a physical rule: a bug in Tierplan, never the user's fault.

    :func:`core.planner.make_plan` replays every plan with the independent validator before returning it;
    a rejection raises this instead of handing out a wrong schedule. ``rule`` names the broken rule (the
    validator's first message, shortened), ``check`` is that first failing message in full, ``errors``
    all of them. Deliberately not a :class:`TierplanError`: callers that catch user-facing errors must not
    swallow it.
    """

    def __init__(self, policy: str, errors: tuple[str, ...]) -> None:
        self.policy = policy
        self.errors = errors
        self.check = errors[0] if errors else "the validator rejected the plan"
        self.rule = _rule_of(self.check)
        super().__init__(
            f"internal error (a bug, please report it): policy '{policy}' built a plan that breaks the rule "
            f"'{self.rule}' ({len(errors)} problem(s)); first: {self.check}"
        )


#: Validator message fragments -> the rule of docs/formats.md they belong to (first match wins).
_RULES = (
    ("version", "recompute reads the versions the producer read"),
    ("stale", "freshness of mutated tensors"),
    ("double allocation", "no double allocation"),
    ("has no source", "a transfer's source holds a copy"),
    ("ends the step", "the step ends in the state it started from"),
    ("capacity", "capacity at every instant"),
    ("overlap", "streams never overlap"),
    ("plan.metrics", "reported metrics match the replay"),
    (" lasts ", "durations at least the modelled time"),
    ("computed", "each op computed once"),
)


def _rule_of(check: str) -> str:
    """The rule a validator message belongs to (its first words when none of :data:`_RULES` matches)."""
    low = check.lower()
    for fragment, rule in _RULES:
        if fragment in low:
            return rule
    return " ".join(check.split()[:8])
