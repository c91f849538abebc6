"""Values computed once per live object (the engine's original statistics, a pair), kept while it lives."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any


class PerObject:
    """Values computed once per live object, by identity (the engine's records are not hashable),
    and dropped when the object is collected."""

    def __init__(self) -> None:
        self._values: dict[int, Any] = {}

    def get(self, owner: object, make: Callable[[], Any]) -> Any:
        key = id(owner)
        if key not in self._values:
            self._values[key] = make()
            weakref.finalize(owner, self._values.pop, key, None)
        return self._values[key]
