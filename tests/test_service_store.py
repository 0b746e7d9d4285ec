"""The job store against a real Redis: races with cancellation, attempts, TTLs and the one-pipeline write."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.store import PACK_BYTES, IdempotencyConflict, JobNotFound, JobStore, TensorNotKept
from services.trace import trace
from shared.spec import TraceSpec


@pytest.fixture
def store(redis_base: str) -> JobStore:
    import redis

    return JobStore(redis.Redis.from_url(f"{redis_base}/0"), ttl_s=60, max_job_bytes=1 << 20)


def _done(spec: dict[str, Any]) -> Any:
    return trace(TraceSpec.model_validate(spec))


def test_finish_writes_everything_with_one_ttl(store: JobStore, chain_spec: dict[str, Any], keys_of: Any) -> None:
    spec = TraceSpec.model_validate(chain_spec)
    job_id, created = store.create(spec.model_dump_json())
    assert created and store.get(job_id).status == "queued"
    d = store.deliver(job_id, max_attempts=3)
    assert (d.state, d.attempt) == ("running", 1)
    done = _done(chain_spec)
    assert store.finish(job_id, done, None, d)
    rec = store.get(job_id, "manifest", "summary", "result")
    assert rec.status == "succeeded" and rec.manifest is not None and rec.summary_json and rec.result_json
    assert len(rec.manifest.stored) == len(done.arrays)
    # small tensors share one packed key: the job's hash plus that key, however many tensors
    assert all(m.offset is not None for m in rec.manifest.stored.values())
    # the hash, the packed tensors, the index of where each tensor is, the `done` stream long polls wait on
    assert len(keys_of(job_id)) == 4 and store.r.xlen(store.done_key(job_id)) == 1
    assert {0 < store.r.ttl(k) <= 60 for k in keys_of(job_id)} == {True}
    engine, a = store.tensor(job_id, None, "grad", "x")
    assert engine == "torch" and a.shape == () and float(a) == 2569.0
    for key, want in done.arrays.items():  # every tensor comes back bit for bit from its offset
        engine, field, name = key.split("/", 2)
        np.testing.assert_array_equal(store.tensor(job_id, engine, field, name)[1], want)
    late = store.deliver(job_id, 3)
    assert (late.state, late.attempt) == ("succeeded", 0)  # a late redelivery does not run it again


def test_cancelled_job_is_never_written_back(store: JobStore, chain_spec: dict[str, Any], keys_of: Any) -> None:
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    d = store.deliver(job_id, 3)
    assert store.delete(job_id) == "running"
    done = _done(chain_spec)
    assert not store.progress(job_id, "torch", 0.5)
    assert not store.finish(job_id, done, "all", d)
    assert not store.fail(job_id, "X", "late")
    assert store.get(job_id).status == "cancelled"  # the record stays, with no data of the job
    assert sorted(keys_of(job_id)) == sorted([store.job_key(job_id).encode(), store.done_key(job_id).encode()])
    assert store.deliver(job_id, 3).state == "cancelled"
    assert store.delete(job_id) == "cancelled" and not keys_of(job_id)
    with pytest.raises(JobNotFound):
        store.get(job_id)
    assert store.deliver(job_id, 3).state == "gone"


def test_attempts_are_capped(store: JobStore, chain_spec: dict[str, Any]) -> None:
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    assert [(d.state, d.attempt) for d in (store.deliver(job_id, 2), store.deliver(job_id, 2))] == [
        ("running", 1), ("running", 2)]  # the second: redelivered after a lost worker
    assert store.r.xlen(store.done_key(job_id)) == 0
    d = store.deliver(job_id, 2)
    assert (d.state, d.attempt) == ("exhausted", 2)  # gave up after the two it made
    assert store.r.xlen(store.done_key(job_id)) == 1  # a long poll wakes for a failed job too
    rec = store.get(job_id)
    assert rec.status == "failed" and rec.error is not None and "after 2 attempts" in rec.error.message


def test_byte_cap_and_idempotency(store: JobStore) -> None:
    spec = {"inputs": {"a": {"shape": [64, 64]}}, "nodes": [{"name": "s", "op": "sum", "inputs": ["a"]}]}
    small = JobStore(store.r, ttl_s=60, max_job_bytes=20000)
    body = TraceSpec.model_validate(spec).model_dump_json()
    job_id, created = small.create(body, "key-1")
    assert created and small.create(body, "key-1") == (job_id, False)
    with pytest.raises(IdempotencyConflict):
        small.create(TraceSpec.model_validate({**spec, "dtype": "float64"}).model_dump_json(), "key-1")
    d = small.deliver(job_id, 3)
    done = _done(spec)
    assert small.finish(job_id, done, "all", d)
    manifest = small.get(job_id, "manifest").manifest
    assert manifest is not None and manifest.nbytes <= 20000 and manifest.not_kept
    key = next(iter(manifest.not_kept))
    engine, field, name = key.split("/", 2)
    with pytest.raises(TensorNotKept, match="cap of 20000"):
        small.tensor(job_id, engine, field, name)
    assert isinstance(small.tensor(job_id, "torch", "value", "a")[1], np.ndarray)


def test_large_tensors_get_their_own_keys(store: JobStore, keys_of: Any) -> None:
    spec = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
        {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}
    job_id, _ = store.create(TraceSpec.model_validate(spec).model_dump_json())
    d = store.deliver(job_id, 3)
    done = _done(spec)
    assert store.finish(job_id, done, None, d)
    stored = store.get(job_id, "manifest").manifest.stored  # type: ignore[union-attr]
    own = {k for k, m in stored.items() if m.offset is None}
    assert own == {k for k, a in done.arrays.items() if a.nbytes > PACK_BYTES} and own
    assert len(keys_of(job_id)) == 4 + len(own)  # hash, pack, index, done stream and one key each
    np.testing.assert_array_equal(store.tensor(job_id, "reference", "grad", "x")[1], done.arrays["reference/grad/x"])
    store.delete(job_id)
    assert keys_of(job_id) == []


def test_delivery_carries_the_spec_and_a_late_finish_leaves_no_keys(store: JobStore, keys_of: Any) -> None:
    # deliver() hands the worker spec, TTL and byte cap in one round trip; finish() then writes in one MULTI
    # whose last step checks the job: deleted meanwhile, even its large tensors' keys are removed again
    spec = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
        {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}
    body = TraceSpec.model_validate(spec).model_dump_json()
    job_id, _ = store.create(body)
    d = store.deliver(job_id, 3)
    assert (d.state, d.attempt, d.spec_json, d.ttl, d.max_bytes) == ("running", 1, body, 60, 1 << 20)
    done = _done(spec)
    store.delete(job_id)
    assert any(a.nbytes > PACK_BYTES for a in done.arrays.values())
    assert not store.finish(job_id, done, "all", d)
    assert len(keys_of(job_id)) == 2  # the cancelled record and its done stream: no tensor key survives
    assert store.deliver(job_id, 3).state == "cancelled"


def test_a_late_duplicate_delivery_leaves_the_finished_job_intact(store: JobStore, keys_of: Any) -> None:
    # a message redelivered while its first delivery still runs: both run; the first to finish publishes,
    # the second finds the job finished and removes only the keys it wrote itself
    spec = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
        {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}
    job_id, _ = store.create(TraceSpec.model_validate(spec).model_dump_json())
    first, second = store.deliver(job_id, 3), store.deliver(job_id, 3)
    assert (first.attempt, second.attempt) == (1, 2)
    done = _done(spec)
    assert store.finish(job_id, done, "all", first)
    keys = sorted(keys_of(job_id))
    assert not store.finish(job_id, done, "all", second)
    assert sorted(keys_of(job_id)) == keys  # nothing of the second delivery is left, nothing of the first is gone
    for key in ("torch/value/y", "reference/grad/x", "torch/grad/s"):  # an own-key tensor and packed ones
        engine, field, name = key.split("/", 2)
        np.testing.assert_array_equal(store.tensor(job_id, engine, field, name)[1], done.arrays[key])
    store.delete(job_id)
    assert not keys_of(job_id)


def test_progress_is_throttled_and_a_held_back_step_is_written_late(store: JobStore, chain_spec: dict[str, Any]) -> None:
    import time

    from services.errors import CancelledError
    from services.progress import ThrottledProgress

    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    store.deliver(job_id, 3)
    step = lambda: store.get(job_id).progress.step  # type: ignore[union-attr]  # noqa: E731
    progress = ThrottledProgress(lambda s, f: store.progress(job_id, s, f), interval_s=0.3)
    progress("torch", 0.0)
    progress("reference", 0.3)  # both within the interval: held back, the newer one wins
    assert step() == "start"
    time.sleep(0.6)
    assert step() == "reference"  # written by the timer, while the step still runs
    progress("compare", 0.6)  # the interval has passed: written at once
    assert step() == "compare"
    progress("store", 0.9)
    progress.close()  # finishing: what was held back is dropped
    time.sleep(0.5)
    assert step() == "compare"

    store.delete(job_id)  # cancelled: the next write finds out, the call after it raises
    late = ThrottledProgress(lambda s, f: store.progress(job_id, s, f), interval_s=0.0)
    with pytest.raises(CancelledError):
        late("torch", 0.0)
