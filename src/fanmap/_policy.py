"""The error policy: what a failed call becomes, and whether it is tried again.

One object, used by the engine for every kind of failure alike: an exception the
function raised, a worker that died under it, a call past its timeout.

```
failure ──► retry?  (tries so far < retries, and the error is one of retry_on)
              │ yes: run the item again, alone
              │ no
              ▼
           on_error: "raise" ─► raise it     "return" ─► Failure(...)     "skip" ─► left out
```
"""

from __future__ import annotations

from typing import Any, Final

from ._args import arguments_of
from ._errors import Failure, WorkerInitError

__all__ = ["SKIPPED", "Policy"]


class _Skipped:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


#: Stands in a skipped item's place until the engine drops it.
SKIPPED: Final = _Skipped()


class Policy:
    """``on_error``, ``retries`` and ``retry_on`` of one run, and the tries so far."""

    __slots__ = ("_tries", "on_error", "retries", "retry_on")

    def __init__(self, on_error: str, retries: int, retry_on: tuple[type[BaseException], ...]) -> None:
        self.on_error = on_error
        self.retries = retries
        self.retry_on = retry_on
        self._tries: dict[int, int] = {}

    @property
    def stop_on_error(self) -> bool:
        """Whether a chunk may stop at its first failure: that failure ends the map."""
        return self.on_error == "raise" and self.retries == 0

    @property
    def skips(self) -> bool:
        return self.on_error == "skip"

    def retry(self, index: int, error: BaseException) -> bool:
        """Whether to run item ``index`` again after ``error`` (counting the try)."""
        if self.retries == 0 or not isinstance(error, self.retry_on) or isinstance(error, WorkerInitError):
            return False
        tries = self._tries.get(index, 0) + 1
        if tries > self.retries:
            return False
        self._tries[index] = tries
        return True

    def tries(self, index: int) -> int:
        """How many times item ``index`` was run again so far."""
        return self._tries.get(index, 0)

    def settle(self, error: BaseException, index: int, mode: int, item: Any, kwargs: dict[str, Any]) -> Any:
        """What a failed item becomes: raised, a `Failure`, or `SKIPPED`."""
        if self.on_error == "raise":
            raise error
        if self.on_error == "skip":
            return SKIPPED
        args, call_kwargs = arguments_of(mode, item, kwargs)
        return Failure(error, index, args, dict(call_kwargs))
