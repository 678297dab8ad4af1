"""Ports: an answer a lower layer needs from a higher one, passed in rather than looked up.

The layers (docs/architecture.md) let an app import only the apps below it. When a page in a
lower app must say something only a higher app knows ("which workers lose access if this
role changes?"), the lower app declares a `Port` and the higher app plugs its function in
from its `AppConfig.ready()`. The code that answers lives with the app that owns the question,
nothing is fetched by model name (`get_model`), and a port nobody plugged fails loudly.
After Sentry's hybrid-cloud services: cross a boundary through a typed call, not a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

from django.core.exceptions import ImproperlyConfigured

P = ParamSpec("P")
R = TypeVar("R")


class Port(Generic[P, R]):
    def __init__(self, name: str, *, answered_by: str) -> None:
        self.name = name
        self.answered_by = answered_by  # the module expected to plug in, for the error
        self._answer: Callable[P, R] | None = None

    def plug(self, answer: Callable[P, R]) -> None:
        self._answer = answer

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._answer is None:
            raise ImproperlyConfigured(f"{self.name}: nothing plugged in ({self.answered_by})")
        return self._answer(*args, **kwargs)
