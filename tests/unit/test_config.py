"""Options: validation messages, the config() context, the environment, precedence."""

from __future__ import annotations

from typing import Any

import pytest

import fanmap
from fanmap import _config, parallel
from tests import funcs


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be >= 1, got 0"),
        ({"workers": 2.5}, TypeError, "workers must be an int, not float"),
        ({"workers": True}, TypeError, "workers must be an int, not bool"),
        (
            {"backend": "gpu"},
            ValueError,
            "backend='gpu' is not valid; use one of 'process', 'thread', 'serial'",
        ),
        ({"backend": 3}, TypeError, "backend must be one of"),
        ({"on_error": "ignore"}, ValueError, "use one of 'raise', 'return', 'skip'"),
        ({"ordered": "yes"}, TypeError, "ordered must be True or False"),
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
        ({"timeout": 0}, ValueError, "timeout must be > 0 seconds"),
        ({"timeout": "1"}, TypeError, "timeout must be a number of seconds or None"),
        ({"retries": -1}, ValueError, "retries must be >= 0"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on must be an exception type"),
        ({"progress": 3}, TypeError, "progress must be True, False or a callable"),
        ({"start_method": "thread"}, ValueError, "start_method='thread' is not valid; use one of"),
        ({"max_tasks_per_worker": 0}, ValueError, "max_tasks_per_worker must be >= 1"),
        ({"wokers": 2}, TypeError, "unknown option 'wokers'; the options are: workers, backend"),
    ],
)
def test_bad_options_are_refused_at_once(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        parallel(funcs.square, **options)
    with pytest.raises(error):
        parallel(funcs.square).options(**options)
    with pytest.raises(error):
        fanmap.pmap(funcs.square, [1], **options)
    with pytest.raises(error), fanmap.config(**options):
        pass


def test_defaults() -> None:
    options = _config.resolve()
    assert options.workers == _config.cpu_count() >= 1
    assert options.backend == "process"
    assert options.ordered is True
    assert options.on_error == "raise"
    assert options.start_method in ("fork", "spawn", "forkserver")


def test_config_sets_defaults_and_explicit_options_win() -> None:
    pf = parallel(funcs.pid, workers=1)
    with fanmap.config(backend="serial", workers=3):
        assert _config.resolve(pf._options).workers == 1  # the decorator wins
        assert _config.resolve(pf._options).backend == "serial"
        assert set(pf.map(range(3))) == {__import__("os").getpid()}  # serial: the caller
        with fanmap.config(backend="thread"):
            assert _config.resolve().backend == "thread"
            assert _config.resolve().workers == 3
        assert _config.resolve().backend == "serial"
    assert _config.resolve().backend == "process"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANMAP_BACKEND", "thread")
    monkeypatch.setenv("FANMAP_WORKERS", "5")
    assert _config.resolve().backend == "thread"
    assert _config.resolve().workers == 5
    with fanmap.config(workers=2):
        assert _config.resolve().workers == 2  # config() wins over the environment
    monkeypatch.setenv("FANMAP_WORKERS", "many")
    with pytest.raises(ValueError, match="FANMAP_WORKERS must be a whole number, got 'many'"):
        _config.resolve()
    monkeypatch.setenv("FANMAP_WORKERS", "2")
    monkeypatch.setenv("FANMAP_BACKEND", "gpu")
    with pytest.raises(ValueError, match="FANMAP_BACKEND: backend='gpu' is not valid"):
        _config.resolve()


def test_cpu_count_respects_affinity() -> None:
    import os

    assert _config.cpu_count() <= len(os.sched_getaffinity(0))


def test_an_infinite_timeout_is_no_timeout_and_keeps_calls_batched() -> None:
    import math

    assert _config.validate({"timeout": math.inf}) == {"timeout": None}
    assert _config.validate({"timeout": 1e12}) == {"timeout": 1e12}
    with fanmap.config(timeout=math.inf):
        assert _config.resolve().timeout is None
    # A timeout sends calls one at a time; math.inf sets no limit, so they stay batched.
    pf = parallel(funcs.square, backend="thread", workers=2, timeout=math.inf)
    with fanmap.insights() as seen:
        assert pf.map(range(5000)) == [x * x for x in range(5000)]
    assert seen.to_dict()["maps"][0]["chunks"]["max"] > 1
    fanmap.shutdown()
