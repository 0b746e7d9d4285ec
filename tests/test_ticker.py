"""The process's ticker thread, and the lease keeper and progress writer that run on it instead of threads of
their own per job."""

from __future__ import annotations

import os
import threading
import time

from services.lease import LeaseKeeper
from services.progress import ThrottledProgress
from services.ticker import Ticker


def _ticker_threads() -> int:
    return sum(t.name == "ticker" for t in threading.enumerate())


def test_calls_run_in_time_order_and_cancelled_ones_do_not() -> None:
    ticker, ran, done = Ticker(), list[str](), threading.Event()
    ticker.call_later(0.15, lambda: (ran.append("late"), done.set()))
    ticker.call_later(0.05, lambda: ran.append("early"))
    ticker.call_later(0.10, lambda: ran.append("cancelled")).cancel()
    ticker.call_later(0.0, lambda: 1 / 0)  # a failing call is logged; the ones after it still run
    assert done.wait(5)
    assert ran == ["early", "late"]


def test_one_thread_per_process_however_many_jobs() -> None:
    ticker = Ticker()
    before = _ticker_threads()
    calls = [ticker.call_later(60, lambda: None) for _ in range(50)]  # 50 jobs' beats: one thread
    assert _ticker_threads() == before + 1
    for c in calls:
        c.cancel()


def test_a_forked_child_starts_its_own_thread() -> None:
    ticker = Ticker()
    ticker.call_later(60, lambda: None).cancel()  # the parent's thread exists
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no thread was copied; its first call starts one, and it runs
        try:
            ok = threading.Event()
            ticker.call_later(0.01, ok.set)
            os.write(w, b"1" if ok.wait(5) else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)


def test_lease_keeper_beats_until_it_exits_and_stops_when_lost() -> None:
    ticker, beats = Ticker(), list[float]()
    with LeaseKeeper(lambda: beats.append(time.monotonic()) or True, lease_s=0.15, ticker=ticker) as lease:
        time.sleep(0.4)  # a beat every 0.05 s
    n = len(beats)
    assert n >= 4 and not lease.lost
    time.sleep(0.2)
    assert len(beats) == n  # no beat after exit

    lost_after = list[int]()
    with LeaseKeeper(lambda: bool(lost_after.append(1)), lease_s=0.15, ticker=ticker) as lease:
        time.sleep(0.3)
    assert lease.lost and len(lost_after) == 1  # the store said no: no more renewals


def test_progress_held_back_is_written_by_the_ticker() -> None:
    ticker, writes = Ticker(), list[tuple[str, float]]()
    progress = ThrottledProgress(lambda s, f: writes.append((s, f)) or True, interval_s=0.1, ticker=ticker)
    progress("torch", 0.0)
    progress("reference", 0.5)  # within the interval: held back, the newer wins
    assert writes == []
    deadline = time.monotonic() + 5
    while not writes and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writes == [("reference", 0.5)]
    progress("compare", 0.8)  # within the interval of that write: held back
    progress.close()  # finishing: held back and dropped
    time.sleep(0.2)
    assert writes == [("reference", 0.5)]
