"""Base of the app's feature logics: like trame-slicer's ``BaseLogic``, a typed state dataclass over the trame
state, here in a namespace of its own so that features never share a state key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from trame_server import Server
from trame_server.utils.typed_state import TypedState

from LesionResponseReview.web.context import ReviewContext

T = TypeVar("T")


def typed_state(server: Server, state_type: type[T], namespace: str) -> TypedState[T]:
    """The typed view of a feature's state (the UI builders use the same call to get the key names)."""
    return TypedState(server.state, state_type, namespace=namespace)


class FeatureLogic(Generic[T]):
    """One feature: its typed state (``name`` = state keys, ``data`` = values) and the shared context."""

    def __init__(self, server: Server, context: ReviewContext, state_type: type[T], namespace: str) -> None:
        self.server = server
        self.context = context
        self._typed = typed_state(server, state_type, namespace)

    @property
    def state(self) -> Any:
        return self.server.state

    @property
    def name(self) -> T:
        return self._typed.name

    @property
    def data(self) -> T:
        return self._typed.data

    @property
    def slicer_app(self) -> Any:
        return self.context.slicer_app

    @property
    def scene(self) -> Any:
        return self.context.slicer_app.scene

    def bind_changes(self, changes: dict[Any, Callable]) -> None:
        self._typed.bind_changes(changes)
