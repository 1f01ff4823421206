"""A state machine as data: `{state: {input: next_state}}`.

An input with no entry for the current state raises `InvalidTransition` and the caller's state is
left as it was (the machine holds no state itself: it maps (state, input) to the next state).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from gateway.errors import Conflict

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741


class InvalidTransition(Conflict):
    """The input does not apply in the current state (reason `invalid-state`)."""


class Machine(Generic[S, I]):
    def __init__(self, name: str, table: Mapping[S, Mapping[I, S]], final: frozenset[S]) -> None:
        self.name = name
        self.table = table
        self.final = final
        for state, row in table.items():
            if state in final and row:
                raise ValueError(f"{name}: final state {state} has transitions")
            for target in row.values():
                if target not in table:
                    raise ValueError(f"{name}: {state} leads to {target}, which has no row")

    def allows(self, state: S, event: I) -> bool:
        return event in self.table[state]

    def next(self, state: S, event: I) -> S:
        try:
            return self.table[state][event]
        except KeyError:
            raise InvalidTransition(
                f"{self.name} in state {state.value} does not accept {event.value}",
                details={"state": state.value, "input": event.value},
            ) from None

    def is_final(self, state: S) -> bool:
        return state in self.final
