"""Live connections held by a block: never pickled or deep-copied with it (a copy connects anew)."""

from __future__ import annotations

from typing import Any


class LiveState:
    """Base for a block's private connection holder; subclasses set their fields in ``__init__``."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveState:
        return type(self)()
