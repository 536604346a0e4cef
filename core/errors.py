"""Domain exceptions: every message names the file, the field and the problem so a user can act on it."""

from __future__ import annotations

__all__ = ["TierplanError", "InputError", "InfeasibleError", "PlanInvalidError"]


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
    """The graph cannot run on the hardware under any plan this policy can make; the message says why."""


class PlanInvalidError(TierplanError):
    """A plan breaks the physical rules (raised by callers that want an exception from a validation report)."""
