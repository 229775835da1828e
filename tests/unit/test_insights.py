"""How insights reads how many calls of an async function ran at once."""

from __future__ import annotations

from fanmap import _insights
from fanmap._chunk import Chunk, Done


def test_concurrency_is_read_on_the_workers_clock_not_from_when_replies_were_read() -> None:
    # Two calls on worker 1 overlap on its clock; the second chunk's reply was read 0.5 s
    # late, so on the caller's clock (reply read, less the seconds) they look apart.
    late = [
        _insights._Slice("worker 1", 0, 1, 0.0, 1.0, [1.0], [100.0]),
        _insights._Slice("worker 1", 1, 1, 1.5, 0.01, [0.01], [100.99]),
    ]
    assert _insights._peaks(late) == {"worker 1": 2}
    # A chunk of the same worker that failed as a whole ran no call and changes nothing.
    failed = _insights._Slice("worker 1", 2, 0, 2.0, 0.0, None)
    assert _insights._peaks([*late, failed]) == {"worker 1": 2}
    # Calls that did not await ran one after the other, even in one chunk.
    apart = [_insights._Slice("worker 1", 0, 2, 0.0, 1.0, [0.5, 0.5], [100.0, 100.5])]
    assert _insights._peaks(apart) == {"worker 1": 1}


def test_a_reply_with_starts_is_recorded_with_them() -> None:
    record = _insights.MapRecord("f.map", "process", 1, repr, together=True)
    began = record.began
    record.done(
        Done(Chunk(0, [0, 1]), [0, 1], None, 1.0, "worker 1", ([1.0, 1.0], [50.0, 50.0])), began + 1.0
    )
    # read 0.5 s late: on the caller's clock this chunk would start after the first ended
    record.done(Done(Chunk(2, [2]), [2], None, 0.2, "worker 1", ([0.2], [50.5])), began + 2.2)
    assert _insights._peaks(record.slices) == {"worker 1": 3}
    assert sorted(s for s, _, _, _ in record.slowest) == [0.2, 1.0, 1.0]
