"""Progress reporting: a tqdm bar for ``progress=True``, or the user's callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Reporter", "open_reporter"]


class Reporter:
    """Counts finished items and passes the count on."""

    __slots__ = ("_bar", "_callback", "done", "total")

    def __init__(
        self, callback: Callable[[int, int | None], object] | None, bar: Any, total: int | None
    ) -> None:
        self._callback = callback
        self._bar = bar
        self.done = 0
        self.total = total

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def open_reporter(option: Any, total: int | None, label: str) -> Reporter | None:
    """Return a reporter for the ``progress`` option, or ``None`` when it is off."""
    if option is False or option is None:
        return None
    if option is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError(
                "progress=True draws its bar with tqdm, which is not installed: "
                "pip install 'fanmap[progress]' (or pass progress=callable)"
            ) from None
        return Reporter(None, tqdm(total=total, desc=label, unit="item"), total)
    return Reporter(option, None, total)
