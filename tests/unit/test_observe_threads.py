"""The observer's threads: a call never waits for another one, threads are
reused rather than started per call, and idle ones end."""

from __future__ import annotations

import threading
import time

import pytest

from rollout.engine.observe import _Threads


def _alive(native_id: int) -> bool:
    return any(t.native_id == native_id for t in threading.enumerate())


def test_calls_one_after_another_reuse_one_thread() -> None:
    threads = _Threads()
    # Native ids: a pthread ident is reused as soon as its thread ends.
    idents = {threads.submit(threading.get_native_id).result(timeout=5) for _ in range(200)}
    assert len(idents) <= 2  # a thread marks itself idle just after its call answers


def test_a_hanging_call_holds_up_no_other() -> None:
    threads = _Threads()
    release = threading.Event()
    hung = threads.submit(lambda: release.wait(30))
    assert threads.submit(lambda: "answered").result(timeout=5) == "answered"
    assert not hung.done()
    release.set()
    assert hung.result(timeout=5) is True


def test_calls_at_once_each_get_a_thread() -> None:
    threads = _Threads()
    barrier = threading.Barrier(20, timeout=10)  # breaks unless all 20 run together
    calls = [threads.submit(barrier.wait) for _ in range(20)]
    assert sorted(c.result(timeout=15) for c in calls) == list(range(20))


def test_an_idle_thread_ends_after_its_linger() -> None:
    threads = _Threads(linger=0.05)
    native_id = threads.submit(threading.get_native_id).result(timeout=5)
    deadline = time.monotonic() + 5
    while _alive(native_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(native_id)
    assert threads.submit(lambda: 7).result(timeout=5) == 7  # a new one starts


def test_the_threads_are_daemons_and_errors_reach_the_future() -> None:
    threads = _Threads()
    assert threads.submit(lambda: threading.current_thread().daemon).result(timeout=5)

    def broken() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        threads.submit(broken).result(timeout=5)
