"""The thread behind ``submit``: one open-ended, unordered run over a queue of calls.

``f.submit(x)`` puts a call and its `Future` in the queue; a thread of the function
runs the engine over that queue (calls submitted close together are batched like a
map) and settles each future as its call finishes. The thread ends after an idle
spell, giving its pool back; the next ``submit`` starts another.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from ._args import Args, CallMode
from ._engine import execute
from ._errors import Failure
from ._sources import STOP, QueueSource

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["Submitter"]

#: Seconds the thread behind ``submit`` waits for more work before it lets go of its pool.
_SUBMIT_IDLE: Final = 2.0


class Submitter:
    """The thread behind ``submit``: one open-ended unordered run over a queue."""

    def __init__(self, owner: Any) -> None:
        import queue

        self._owner = owner
        self._inbox: queue.SimpleQueue[tuple[Future[Any], Args]] = queue.SimpleQueue()
        self._futures: dict[int, Future[Any]] = {}
        self._taken = 0
        self._lock = threading.Lock()
        self._open = True
        self._thread = threading.Thread(target=self._serve, name="fanmap-submit", daemon=True)
        self._started = False

    def put(self, future: Future[Any], call: Args) -> bool:
        """Queue a call; False if this submitter has ended (then make a new one)."""
        with self._lock:
            if not self._open:
                return False
            self._inbox.put((future, call))
            if not self._started:
                self._started = True
                self._thread.start()
            return True

    def stop(self) -> None:
        """End the run once the calls queued so far are done; wait for it.

        A call submitted afterwards goes to a new submitter (``put`` says False).
        """
        with self._lock:
            if not self._open:
                started = self._started
            else:
                self._open = False
                self._inbox.put(STOP)
                started = self._started
        if started and self._thread is not threading.current_thread():
            self._thread.join()

    def _serve(self) -> None:
        owner = self._owner
        try:
            options = owner._resolve(
                {"ordered": False, "on_error": "return", "progress": False, "checkpoint": None}
            )
        except Exception as exc:
            with self._lock:
                self._open = False  # the next submit starts a new submitter
            self._fail_all(exc)
            return
        while True:
            self._taken = 0  # each run numbers its items from 0
            source = _FutureSource(self)
            try:
                for start, values in execute(
                    owner.__fanmap_call__, owner._ref, CallMode.ARGS, source, {}, options, window=None
                ):
                    for offset, value in enumerate(values):
                        future = self._futures.pop(start + offset)
                        if isinstance(value, Failure):
                            future.set_exception(value.exception)
                        else:
                            future.set_result(value)
            except BaseException as exc:
                self._fail_all(exc)
                if not isinstance(exc, Exception):
                    raise
            with self._lock:
                if self._inbox.empty() or not self._open:
                    self._open = False
                    return

    def _fail_all(self, exc: BaseException) -> None:
        exc = exc.with_traceback(None)  # raised by fanmap here: its own frames say nothing
        for future in self._futures.values():
            if not future.done():
                future.set_exception(exc)
        self._futures.clear()
        while not self._inbox.empty():
            entry = self._inbox.get()
            if entry is STOP:
                continue
            future, _ = entry
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)


class _FutureSource(QueueSource):
    """Hands the submitted calls to the engine, dropping those cancelled meanwhile."""

    def __init__(self, submitter: Submitter) -> None:
        super().__init__(submitter._inbox, _SUBMIT_IDLE)
        self._submitter = submitter

    def take(self, count: int, block: bool) -> Any:
        taken = super().take(count, block)
        if not taken:
            return taken
        calls = []
        sub = self._submitter
        for future, call in taken:
            if future.set_running_or_notify_cancel():
                sub._futures[sub._taken] = future
                sub._taken += 1
                calls.append(call)
        return calls
