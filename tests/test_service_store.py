"""The job store against a real Redis and a real Redis Cluster (every test runs on both): races with cancellation,
attempts, TTLs, the one-pipeline write, idempotency under concurrency, and one slot per job."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import job_keys
from redis.crc import key_slot

from services.store import PACK_BYTES, IdempotencyConflict, JobNotFound, JobStore, TensorNotKept
from services.trace import trace
from shared.job import Manifest
from shared.settings import Settings
from shared.spec import TraceSpec

BIG = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
    {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}
"""A spec with tensors over PACK_BYTES (keys of their own) and small ones (packed)."""


@pytest.fixture(params=["plain", "cluster"])
def store(request: pytest.FixtureRequest, redis_base: str) -> JobStore:
    """A store on the test redis-server, or on the test Redis Cluster (made from settings, as the services do)."""
    if request.param == "plain":
        import redis

        return JobStore(redis.Redis.from_url(f"{redis_base}/0"), ttl_s=60, max_job_bytes=1 << 20)
    settings = Settings(redis_url=request.getfixturevalue("redis_cluster"), broker_url=f"{redis_base}/15",
                        result_ttl_s=60, max_job_bytes=1 << 20)
    store = JobStore.from_settings(settings)
    assert store.cluster
    return store


@pytest.fixture
def keys_of(store: JobStore) -> Any:
    """keys_of(job_id): the job's keys in this store (every node of a cluster)."""
    return lambda job_id: job_keys(store.r, job_id)


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
    # the hash, the result table, the packed tensors, the index of where each tensor is, the `done` stream long
    # polls wait on; the table is no field of the hash (a script never carries it: tens of MB at 100k nodes)
    assert len(keys_of(job_id)) == 5 and store.r.xlen(store.done_key(job_id)) == 1
    assert store.r.hget(store.job_key(job_id), "table") is None
    assert store.table(job_id).names == done.table.names
    assert {0 < store.r.ttl(k) <= 60 for k in keys_of(job_id)} == {True}
    engine, a = store.tensor(job_id, None, "grad", "x")
    assert engine == "torch" and a.shape == () and float(a) == 2569.0
    for key, want in done.arrays.items():  # every tensor comes back bit for bit from its offset
        engine, field, name = key.split("/", 2)
        np.testing.assert_array_equal(store.tensor(job_id, engine, field, name)[1], want)
    # an array under several keys (torch's edge gradient into a single consumer is its source's grad) is packed once
    unique = {id(a): a.nbytes for a in done.arrays.values()}
    packed = store.r.strlen(store.data_key(job_id, d.attempt, "packed"))
    assert packed == sum(unique.values()) < sum(a.nbytes for a in done.arrays.values())
    late = store.deliver(job_id, 3)
    assert (late.state, late.attempt) == ("succeeded", 0)  # a late redelivery does not run it again


def test_cancelled_job_is_never_written_back(store: JobStore, chain_spec: dict[str, Any], keys_of: Any) -> None:
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    d = store.deliver(job_id, 3)
    assert store.delete(job_id) == "running"
    done = _done(chain_spec)
    assert not store.progress(job_id, "torch", 0.5)
    assert not store.finish(job_id, done, "all", d)
    assert not store.fail(job_id, "engine_error", "late")
    assert store.get(job_id).status == "cancelled"  # the record stays, with no data of the job
    assert sorted(keys_of(job_id)) == sorted(k.encode() for k in (store.job_key(job_id), store.done_key(job_id),
                                                                   store.cancel_key(job_id)))  # and the cancel flag
    assert store.deliver(job_id, 3).state == "cancelled"
    assert store.delete(job_id) == "cancelled" and not keys_of(job_id)
    with pytest.raises(JobNotFound):
        store.get(job_id)
    assert store.deliver(job_id, 3).state == "gone"


def test_attempts_are_capped(store: JobStore, chain_spec: dict[str, Any]) -> None:
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    assert [(d.state, d.attempt) for d in (store.deliver(job_id, 2, lease_s=0), store.deliver(job_id, 2, lease_s=0))] == [
        ("running", 1), ("running", 2)]  # the second: redelivered after a lost worker (its lease ran out)
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
    assert len(keys_of(job_id)) == 5 + len(own)  # hash, table, pack, index, done stream and one key each
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
    assert len(keys_of(job_id)) == 3  # the cancelled record, its done stream, the cancel flag: no tensor key survives
    assert store.deliver(job_id, 3).state == "cancelled"


def test_a_delivery_of_a_job_running_under_a_live_lease_is_a_duplicate(store: JobStore, chain_spec: dict[str, Any]) -> None:
    """A broker's redelivery racing the reaper's requeue: the second message finds the job running under a lease
    that has not run out and changes nothing; once the lease has run out, a delivery takes the job over."""
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    first = store.deliver(job_id, 3, lease_s=30)
    dup = store.deliver(job_id, 3, lease_s=30)
    assert (first.state, first.attempt, dup.state, dup.attempt) == ("running", 1, "duplicate", 1)
    assert store.get(job_id).attempts == 1 and store.renew(job_id, 1, 30)  # the first delivery still owns it
    assert store.renew(job_id, 1, 0.0)  # its worker dies: the lease runs out
    time.sleep(0.01)
    later = store.deliver(job_id, 3, lease_s=30)
    assert (later.state, later.attempt) == ("running", 2) and not store.renew(job_id, 1, 30)


def test_a_renewal_racing_the_finish_leaves_no_lease_behind(store: JobStore, chain_spec: dict[str, Any]) -> None:
    """The lease keeper renews in a thread beside the job's own: a finish that lands between the renew script and
    its index write once left the finished job in the lease index (seen under load on a cluster store). The race is
    replayed here in order: the job finishes right after the renew script said it was still running."""
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json())
    d = store.deliver(job_id, 3, lease_s=30)
    run = store._run

    def finishing_meanwhile(name: str, keys: list[str], args: list[Any]) -> Any:
        out = run(name, keys, args)
        if name == "renew":
            assert store.finish(job_id, _done(chain_spec), "all", d)
        return out

    store._run = finishing_meanwhile  # type: ignore[method-assign]
    assert store.renew(job_id, 1, 30)
    assert store.get(job_id).status == "succeeded"
    assert job_id.encode() not in store.r.zrange(store.leases_key(), 0, -1)


def test_a_late_duplicate_delivery_leaves_the_finished_job_intact(store: JobStore, keys_of: Any) -> None:
    # a message redelivered while its first delivery still runs: both run; the first to finish publishes,
    # the second finds the job finished and removes only the keys it wrote itself
    spec = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
        {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "s", "op": "sum", "inputs": ["y"]}]}
    job_id, _ = store.create(TraceSpec.model_validate(spec).model_dump_json())
    first, second = store.deliver(job_id, 3, lease_s=0), store.deliver(job_id, 3)  # the first's lease ran out
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
    time.sleep(0.35)  # a whole interval after the timer's write, however late the timer ran
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


def test_every_key_of_a_job_is_in_one_slot(store: JobStore, keys_of: Any) -> None:
    # the job's hash, done stream, cancel flag and the tensors of each delivery share the job id as hash tag, so
    # that the scripts and the MULTI of a job touch one slot; the Idempotency-Key record and the indexes do not
    body = TraceSpec.model_validate(BIG).model_dump_json()
    job_id, _ = store.create(body, f"slot-{id(store)}")
    first, second = store.deliver(job_id, 3, lease_s=0), store.deliver(job_id, 3)
    done = _done(BIG)
    assert store.finish(job_id, done, "all", second)  # published by the second delivery
    assert not store.finish(job_id, done, "all", first)
    store.r.set(store.cancel_key(job_id), "stopped")  # a cancel flag, as a cancelled job has
    keys = keys_of(job_id)
    own = [k for k in keys if b":t:" in k]
    assert own and len(keys) == 5 + len(own) + 1  # hash, table, pack, index, done, own-key tensors, cancel flag
    assert {k.decode().split("}")[0] for k in keys} == {f"gradtrace:{{{job_id}"}
    slots = {key_slot(k) for k in keys}
    assert slots == {key_slot(store.job_key(job_id).encode())}
    for other in (store.idem_key(f"slot-{id(store)}"), store.recent_key(), store.leases_key()):
        assert "{" not in other  # a slot of its own, never part of a job's script or transaction
    if store.cluster:
        from redis.cluster import RedisCluster

        r = store.r
        assert isinstance(r, RedisCluster)
        assert {r.cluster_keyslot(k.decode()) for k in keys} == slots  # the server's CLUSTER KEYSLOT agrees
        assert len({r.get_node_from_key(k).name for k in keys}) == 1
        spread = {r.get_node_from_key(store.job_key(store.create("{}")[0])).name for _ in range(24)}
        assert len(spread) > 1, "jobs spread over the cluster's nodes"


def test_concurrent_submits_with_one_key_make_one_job(store: JobStore, chain_spec: dict[str, Any]) -> None:
    body = TraceSpec.model_validate(chain_spec).model_dump_json()
    key = f"race-{id(store)}"
    n = 16
    start = threading.Barrier(n)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def submit() -> None:
        start.wait()
        try:
            results.append(store.create(body, key))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == n
    ids = {job_id for job_id, _ in results}
    assert len(ids) == 1 and sum(created for _, created in results) == 1  # one job, created once: queued once
    job_id = ids.pop()
    assert store.r.get(store.idem_key(key)).decode().startswith(job_id + " ")
    # the losers removed the jobs they had written: one hash in the whole store names this key
    named = [k for k in store.r.scan_iter(match="gradtrace:{*}:job", count=1000)
             if store.r.hget(k, "idem") == store.idem_key(key).encode()]
    assert named == [store.job_key(job_id).encode()]


def test_an_idempotency_key_is_free_again_once_its_job_is_gone(store: JobStore, chain_spec: dict[str, Any]) -> None:
    body = TraceSpec.model_validate(chain_spec).model_dump_json()
    key = f"again-{id(store)}"
    first, created = store.create(body, key)
    assert created and store.create(body, key) == (first, False)
    assert store.delete(first) == "queued"  # cancelled: the record stays, and keeps its key
    assert store.create(body, key) == (first, False)
    assert store.delete(first) == "cancelled"  # removed whole: its key's record goes with it
    assert store.r.get(store.idem_key(key)) is None
    second, created = store.create(body, key)
    assert created and second != first
    store.r.delete(store.job_key(second))  # as if it expired before its key's record: the record is stale
    third, created = store.create(body, key)
    assert created and third not in (first, second)
    assert store.r.get(store.idem_key(key)).decode().startswith(third + " ")
    with pytest.raises(IdempotencyConflict):
        store.create(TraceSpec.model_validate({**chain_spec, "dtype": "float64"}).model_dump_json(), key)
    assert store.r.get(store.idem_key(key)).decode().startswith(third + " ")  # a conflict leaves it alone


def test_finishing_gives_the_idempotency_record_the_job_s_new_ttl(store: JobStore, chain_spec: dict[str, Any]) -> None:
    key = f"ttl-{id(store)}"
    job_id, _ = store.create(TraceSpec.model_validate(chain_spec).model_dump_json(), key)
    store.r.expire(store.idem_key(key), 5)
    d = store.deliver(job_id, 3)
    assert store.finish(job_id, _done(chain_spec), None, d)
    assert 5 < store.r.ttl(store.idem_key(key)) <= 60
    assert store.create(TraceSpec.model_validate(chain_spec).model_dump_json(), key) == (job_id, False)
    assert job_id.encode() not in store.r.zrange(store.leases_key(), 0, -1)


def test_tensors_of_a_job_published_by_a_later_delivery(store: JobStore) -> None:
    # tensor() guesses the first delivery's keys (one round trip); for another it learns the right ones
    job_id, _ = store.create(TraceSpec.model_validate(BIG).model_dump_json())
    store.deliver(job_id, 3, lease_s=0)
    d = store.deliver(job_id, 3)
    done = _done(BIG)
    assert store.finish(job_id, done, "all", d)
    for _ in range(2):  # the second time from what this store remembers
        for key in ("torch/value/y", "reference/grad/x", "torch/grad/s"):
            engine, field, name = key.split("/", 2)
            np.testing.assert_array_equal(store.tensor(job_id, engine, field, name)[1], done.arrays[key])
    assert store.get(job_id).data == "2"
    got = store.tensors(job_id, "2", ["torch/value/y", "torch/grad/s", "torch/grad/nothing"])
    assert set(got) == {"torch/value/y", "torch/grad/s"}


def test_a_large_jobs_manifest_is_built_from_its_index(store: JobStore) -> None:
    # a job without a whole result stores no manifest (a line per tensor); asked for, it comes from the index,
    # equal to the one a small job stores, own-key tensors and the keep list's refusals included
    spec = {"inputs": {"x": {"shape": [200, 100], "seed": 1}}, "nodes": [
        {"name": "y", "op": "tanh", "inputs": ["x"]}, {"name": "z", "op": "sin", "inputs": ["y"]},
        {"name": "s", "op": "sum", "inputs": ["z"]}], "keep": ["y"]}
    ts = TraceSpec.model_validate(spec)
    small_id, big_id = (store.create(ts.model_dump_json())[0] for _ in range(2))
    assert store.finish(small_id, trace(ts), ts.keep, store.deliver(small_id, 3))
    big = trace(ts, full_nodes=0)
    assert big.result_json is None and store.finish(big_id, big, ts.keep, store.deliver(big_id, 3))
    rec = store.get(big_id, "manifest")
    assert rec.manifest_json is None
    built = Manifest.model_validate_json(store.manifest_json(rec))  # type: ignore[arg-type]
    kept = store.get(small_id, "manifest").manifest
    assert kept is not None and built == kept
    assert built.stored["torch/value/y"].offset is None and "torch/value/z" in built.not_kept and built.nbytes > 80000
