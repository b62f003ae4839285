"""soup.workers.ElasticExecutor: few threads while calls move, more when they stall."""

from __future__ import annotations

import threading

import pytest

from soup.workers import ElasticExecutor

BOUND = 10.0  # seconds any wait here may take


def test_calls_that_keep_moving_use_only_the_core_threads() -> None:
    pool = ElasticExecutor(2, 64, grow_after=1.0)
    try:
        results = [pool.submit(pow, i, 2) for i in range(500)]
        assert [f.result(BOUND) for f in results] == [i * i for i in range(500)]
        assert pool.thread_count <= 2
    finally:
        pool.shutdown()


def test_a_call_queued_behind_stuck_threads_gets_a_new_one() -> None:
    # Both core threads held by "streams": the next call must still run (go-plugin's
    # GRPCStdio and broker streams hold a thread each for the plugin's whole life).
    release = threading.Event()
    pool = ElasticExecutor(2, 4, grow_after=0.05)
    try:
        streams = [pool.submit(release.wait, BOUND) for _ in range(2)]
        assert pool.submit(lambda: "ran").result(BOUND) == "ran"
        assert pool.thread_count == 3
    finally:
        release.set()
        assert all(s.result(BOUND) for s in streams)
        pool.shutdown()


def test_it_never_grows_past_max_workers() -> None:
    release = threading.Event()
    pool = ElasticExecutor(1, 2, grow_after=0.02)
    try:
        held = [pool.submit(release.wait, BOUND) for _ in range(2)]
        queued = pool.submit(lambda: "late")
        assert not release.wait(0.3)  # many grow_after periods with every thread stuck
        assert pool.thread_count == 2
        assert not queued.done()
        release.set()
        assert queued.result(BOUND) == "late"
        assert all(h.result(BOUND) for h in held)
    finally:
        release.set()
        pool.shutdown()


def test_a_call_raising_reaches_its_future_and_the_thread_goes_on() -> None:
    pool = ElasticExecutor(1, 1)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(BOUND)
        assert pool.submit(lambda: "next").result(BOUND) == "next"
    finally:
        pool.shutdown()


def test_shutdown_cancels_queued_calls_and_refuses_new_ones() -> None:
    release = threading.Event()
    pool = ElasticExecutor(1, 1)
    running = pool.submit(release.wait, BOUND)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)
    release.set()
    assert running.result(BOUND) is True
    pool.shutdown()  # joins the thread: bounded, as the running call has ended


def test_core_must_be_within_max_workers() -> None:
    with pytest.raises(ValueError, match="1 <= core <= max_workers, got 5 and 4"):
        ElasticExecutor(5, 4)
