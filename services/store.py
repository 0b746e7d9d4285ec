"""The Redis job store: one hash per job, one raw-bytes key per kept tensor, all under one TTL, all in one slot
of a Redis Cluster (services.store_keys)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from services.assemble import ResultTable, array_key
from services.jobs import manifest_from_index, missing_reason, select_tensors
from services.store_client import StoreClient, connect
from services.store_keys import KeyLayout
from services.store_scripts import FINISH, NEW_JOB, SCRIPTS
from shared.codec import from_bytes, to_bytes
from shared.job import ErrorCode, JobError, JobProgress, Manifest, StoredTensor
from shared.result import TraceResult
from shared.settings import Settings

if TYPE_CHECKING:
    from services.trace import Trace

_ID = re.compile(r"^[0-9a-f]{32}$")
PACK_BYTES = 64 * 1024
"""Tensors up to this size share one packed key per job: one SET instead of thousands (a 10k-node
graph has ~40k tensors); larger tensors each get their own key."""

WRITE_BATCH_BYTES = 8 * 1024 * 1024
"""A job's tensors are sent in pipelines of about this many bytes: no single round trip holds Redis for long."""
INDEX_BATCH = 10_000
"""Fields per HSET of a job's tensor index (a 100k-node job has ~400k)."""

RECENT_JOBS = 1000
"""How many of the newest jobs the job list remembers."""
LIST_FIELDS = ("status", "attempts", "created_at", "started_at", "finished_at", "progress", "error", "verdict", "nodes")
TABLE_CACHE = 16
"""Parsed result tables an API process keeps (a finished job's table never changes)."""


class JobNotFound(LookupError):
    """No such job: never created, expired or deleted."""


class JobNotReady(LookupError):
    """The job has no result (yet): carries its status."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job is {status}; tensors and graphs exist once it has succeeded")
        self.status = status


class TensorNotFound(LookupError):
    """No such node, engine or field in the job's result."""


class TensorNotKept(LookupError):
    """The tensor exists but was not stored in full (keep list or byte cap); only its summary is in the result."""


class ManifestTooLarge(LookupError):
    """A job stores more tensors than a manifest is built for (MANIFEST_MAX_TENSORS): page the node listing."""


class ResultTooLarge(RuntimeError):
    """What a job would store is over GRADTRACE_MAX_RESULT_BYTES (the estimate at submit let it through)."""


class IdempotencyConflict(ValueError):
    """An Idempotency-Key reused with a different spec."""


def parse_index_entry(entry: bytes) -> StoredTensor:
    """The StoredTensor an index_entry describes."""
    offset, nbytes, dtype, dims = entry.decode().split(" ")
    return StoredTensor(dtype=dtype, shape=[int(d) for d in dims.split(",") if d], nbytes=int(nbytes),
                        offset=None if offset == "-" else int(offset))


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class JobRecord:
    """A job's status fields, decoded, and the bulk fields a caller asked for (as stored JSON)."""

    id: str
    status: str
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: JobProgress | None
    error: JobError | None
    ttl: int
    data: str | None = None
    """The attempt number whose tensors and table were published."""
    spec_json: str | None = None
    summary_json: str | None = None
    result_json: str | None = None
    manifest_json: str | None = None

    @cached_property
    def manifest(self) -> Manifest | None:
        """The Manifest, when succeeded and asked for (parsed on first use: the API sends the stored JSON as it is)."""
        return Manifest.model_validate_json(self.manifest_json) if self.manifest_json else None

    def result(self) -> TraceResult | None:
        """The whole TraceResult, when succeeded, asked for, and the graph was small enough to store one."""
        return TraceResult.model_validate_json(self.result_json) if self.result_json else None


MANIFEST_MAX_TENSORS = 1_000_000
"""The most stored tensors a manifest is built for on request (~6 per node: a ~160k-node graph); reading a
larger index holds Redis past the API's timeout."""
STATUS_FIELDS = ("status", "attempts", "created_at", "started_at", "finished_at", "progress", "error", "ttl", "data")
"""What a status read fetches (HMGET): never the spec, result or table."""
BULK_FIELDS = {"spec": "spec_json", "summary": "summary_json", "result": "result_json", "manifest": "manifest_json"}
"""Bulk hash fields and the JobRecord attribute each fills. Only a job with a whole result has a stored manifest;
a larger one's (a line per stored tensor: tens of MB at 100k nodes) is built from its tensor index when asked
for (JobStore.manifest_json)."""


@dataclass
class Delivery:
    """One delivery of a job to a worker: the state it left the job in ('running' to go ahead; 'duplicate' when
    another worker runs it under a live lease; else the job's own state, or 'gone', 'cancelled', 'exhausted'),
    which attempt it is and, when running, the spec, TTL and byte cap the job was created with."""

    state: str
    attempt: int
    spec_json: str = "{}"
    ttl: int | None = None
    max_bytes: int | None = None


class JobStore:
    """Jobs in Redis, on one server or a Redis Cluster: the key layout is services.store_keys (all keys of a job
    share its id as hash tag, so that every script and transaction touches one slot), the scripts are
    services.store_scripts.

    TTL and byte cap are fixed per job when it is created (from the API's settings) and apply to all its keys.
    `client` is a client, or a function that makes one on first use (a cluster client discovers its nodes when
    made: so the API and the worker start, and answer 503 or retry, while the cluster is away).
    """

    def __init__(self, client: StoreClient | Callable[[], StoreClient], ttl_s: int, max_job_bytes: int,
                 prefix: str = "gradtrace") -> None:
        self._client: StoreClient | None = client if isinstance(client, redis.Redis | RedisCluster) else None
        self._make = None if self._client is not None else client
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {}
        self.ttl_s = ttl_s
        self.max_job_bytes = max_job_bytes
        self.keys = KeyLayout(prefix)
        self._tables: OrderedDict[tuple[str, str], ResultTable] = OrderedDict()
        self._data: OrderedDict[str, str] = OrderedDict()
        """Which delivery's tensors a succeeded job published, for the jobs this process read last (never changes)."""

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float = 60.0) -> JobStore:
        """A store on settings.redis_url (a Redis Cluster with settings.redis_cluster or a redis+cluster:// URL)
        with the settings' TTL and byte cap; `timeout_s` bounds every Redis call (the API passes a short one: a
        stalled Redis is then an error within it, not a hung request)."""
        return cls(lambda: connect(settings.redis_url, settings.redis_cluster, timeout_s), settings.result_ttl_s,
                   settings.max_job_bytes)

    @property
    def r(self) -> StoreClient:
        """The Redis client (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    assert self._make is not None
                    self._client = self._make()
        return self._client

    @property
    def cluster(self) -> bool:
        """True on a Redis Cluster."""
        return isinstance(self.r, RedisCluster)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of store_scripts.SCRIPTS (EVALSHA, loaded where needed)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.r.register_script(SCRIPTS[name])
        return script(keys=keys, args=args)

    # keys (services.store_keys)
    def job_key(self, job_id: str) -> str:
        """The job's hash."""
        return self.keys.job(job_id)

    def data_key(self, job_id: str, attempt: int | str, part: str) -> str:
        """A key of what delivery `attempt` stored: `part` is 'table' (the result table), 'packed', 'index' or
        't:engine/field/name'."""
        return self.keys.data(job_id, attempt, part)

    def done_key(self, job_id: str) -> str:
        """The stream a finished job gets one entry in (what GET ?wait= blocks on)."""
        return self.keys.done(job_id)

    def cancel_key(self, job_id: str) -> str:
        """The cancel flag: 'requested', then 'stopped' once a worker let go of the job."""
        return self.keys.cancel(job_id)

    def idem_key(self, key: str) -> str:
        """An Idempotency-Key's record (-> 'job_id spec_digest'), in a slot of its own."""
        return self.keys.idem(key)

    def recent_key(self) -> str:
        """A sorted set of recent job ids by creation time (for the job list); trimmed to RECENT_JOBS."""
        return self.keys.recent()

    def leases_key(self) -> str:
        """A sorted set of running jobs by lease deadline: where the reaper looks (an index: the job's hash decides)."""
        return self.keys.leases()

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.r.ping())

    # API side
    def create(
        self, spec_json: str, idempotency_key: str | None = None, nodes: int = 0, canonical: str | None = None
    ) -> tuple[str, bool]:
        """Record a queued job of `nodes` nodes (and list it among the recent ones); returns (id, created).
        A known Idempotency-Key gives its job back when `canonical` (the spec with every default written out;
        default spec_json) is the same.

        The key's record and the job are in different slots (of a cluster), so no one step writes both: the job
        is written first, then the key is claimed for it atomically (CLAIM, on the record alone). Of concurrent
        requests with one key exactly one claims it; the others delete the job they wrote and answer with the
        winner's, which exists already (it was written before its claim). A record naming a job that is gone
        (expired or deleted) is released, only while it still names that job, and claimed again."""
        job_id = uuid.uuid4().hex
        fields: dict[str, str | int] = {
            "id": job_id, "created_at": now_iso(), "attempts": 0, "spec": spec_json, "ttl": self.ttl_s,
            "max_bytes": self.max_job_bytes, "nodes": nodes,
            "progress": JobProgress(step="queued", fraction=0.0).model_dump_json(), "status": "queued",
        }
        ik = self.idem_key(idempotency_key) if idempotency_key else None
        if ik:
            fields["idem"] = ik
        args = [self.ttl_s, *[x for kv in fields.items() for x in kv]]
        if ik is None:  # the job, then its listing, in one round trip (EVAL: a cluster pipeline has no evalsha)
            with self.r.pipeline(transaction=False) as p:
                p.execute_command("EVAL", NEW_JOB, 1, self.job_key(job_id), *args)
                self._list(job_id, p)
                p.execute()
            return job_id, True
        self._run("new_job", [self.job_key(job_id)], args)
        digest = hashlib.sha256((canonical or spec_json).encode()).hexdigest()
        claimed = False
        try:
            for _ in range(2):
                cur = self._run("claim", [ik], [f"{job_id} {digest}", self.ttl_s])
                if cur is None:
                    with self.r.pipeline(transaction=False) as p:
                        self._list(job_id, p)
                        p.execute()
                    claimed = True
                    return job_id, True
                other, other_digest = cur.decode().split(" ")
                if other_digest != digest:
                    raise IdempotencyConflict("this Idempotency-Key was used with a different spec")
                if self.r.exists(self.job_key(other)):
                    return other, False
                self._run("idem_release", [ik], [other, ""])  # its job expired or was deleted: the key is free again
            raise IdempotencyConflict("this Idempotency-Key is in use by another request")
        finally:
            if not claimed:  # the job written above is not to run: another request's job (or none) answers
                with contextlib.suppress(redis.RedisError):
                    self.r.delete(self.job_key(job_id))

    def _list(self, job_id: str, pipe: Any) -> None:
        """Queue on `pipe` the listing of a job among the recent ones (one key of its own slot, after the job's own
        keys are written)."""
        pipe.zadd(self.recent_key(), {job_id: time.time()})
        pipe.zremrangebyrank(self.recent_key(), 0, -RECENT_JOBS - 1)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest jobs (at most `limit`), each as its list fields; ids whose job is gone are dropped."""
        ids = [i.decode() for i in self.r.zrevrange(self.recent_key(), 0, limit - 1)]
        fields = [*LIST_FIELDS]
        with self.r.pipeline(transaction=False) as p:
            for job_id in ids:
                p.hmget(self.job_key(job_id), fields)
            rows = p.execute()
        out, gone = [], []
        for job_id, values in zip(ids, rows, strict=True):
            if values[0] is None:
                gone.append(job_id)
                continue
            d = {k: v.decode() if v is not None else None for k, v in zip(fields, values, strict=True)}
            out.append({
                "id": job_id, "status": d["status"], "attempts": int(d["attempts"] or 0), "created_at": d["created_at"],
                "started_at": d["started_at"], "finished_at": d["finished_at"],
                "progress": json.loads(d["progress"]) if d["progress"] else None,
                "error": json.loads(d["error"]) if d["error"] else None,
                "verdict": d["verdict"], "nodes": int(d["nodes"] or 0),
            })
        if gone:
            self.r.zrem(self.recent_key(), *gone)
        return out

    def get(self, job_id: str, *bulk: str) -> JobRecord:
        """The job's status fields and the bulk fields named (of BULK_FIELDS), in one HMGET; JobNotFound when
        there is no such job."""
        values = self.r.hmget(self.job_key(job_id), [*STATUS_FIELDS, *bulk]) if _ID.match(job_id) else [None]
        if values[0] is None:
            raise JobNotFound(f"no job '{job_id}' (unknown, expired or deleted)")
        s = {k: v.decode() if v is not None else None for k, v in zip([*STATUS_FIELDS, *bulk], values, strict=True)}
        return JobRecord(
            id=job_id, status=s["status"] or "", attempts=int(s["attempts"] or 0), created_at=s["created_at"] or "",
            started_at=s["started_at"], finished_at=s["finished_at"],
            progress=JobProgress.model_validate_json(s["progress"]) if s["progress"] else None,
            error=JobError.model_validate_json(s["error"]) if s["error"] else None,
            ttl=int(s["ttl"] or self.ttl_s), data=s["data"],
            **{BULK_FIELDS[b]: s[b] for b in bulk},
        )

    def manifest_json(self, rec: JobRecord) -> str | None:
        """The Manifest JSON of a succeeded job: the stored one (jobs with a whole result), else built from the
        job's tensor index (larger jobs store none: writing it cost more than any read of it)."""
        if rec.manifest_json is not None or rec.status != "succeeded" or rec.data is None:
            return rec.manifest_json
        index = self.data_key(rec.id, rec.data, "index")
        n = self.r.hlen(index)
        if n > MANIFEST_MAX_TENSORS:
            raise ManifestTooLarge(f"the job stores {n:,} tensors, over the {MANIFEST_MAX_TENSORS:,} a manifest lists: "
                                   "page through its node listing (/v1/jobs/{id}/nodes) instead")
        return manifest_from_index(self.r.hgetall(index))

    def table(self, job_id: str) -> ResultTable:
        """A succeeded job's ResultTable (parsed once per process and delivery: a finished job never changes)."""
        rec = self.get(job_id)
        if rec.status != "succeeded" or rec.data is None:
            raise JobNotReady(rec.status)
        key = (job_id, rec.data)
        cached = self._tables.get(key)
        if cached is None:
            raw = self.r.get(self.data_key(job_id, rec.data, "table"))
            if raw is None:
                raise JobNotFound(f"job '{job_id}' expired")
            cached = ResultTable.from_json(raw)
            self._tables[key] = cached
            while len(self._tables) > TABLE_CACHE:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return cached

    def tensors(self, job_id: str, data: str, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored tensors of these array keys (missing and not-kept ones left out), in one round trip
        for packed tensors and one pipeline for the few with their own key."""
        if not keys:
            return {}
        index, pack = self.data_key(job_id, data, "index"), self.data_key(job_id, data, "packed")
        reply = self._run("fetch_many", [index, pack], keys)
        out: dict[str, np.ndarray] = {}
        own: list[tuple[str, StoredTensor]] = []
        for k, entry, raw in zip(keys, reply[0::2], reply[1::2], strict=True):
            if not entry:
                continue
            meta = parse_index_entry(entry)
            if meta.offset is None:
                own.append((k, meta))
            elif raw is not None:
                out[k] = from_bytes(raw, meta.dtype, meta.shape)
        if own:
            with self.r.pipeline(transaction=False) as p:
                for k, _ in own:
                    p.get(self.data_key(job_id, data, f"t:{k}"))
                for (k, meta), raw in zip(own, p.execute(), strict=True):
                    if raw is not None and len(raw) == meta.nbytes:
                        out[k] = from_bytes(raw, meta.dtype, meta.shape)
        return out

    def delete(self, job_id: str) -> str:
        """A queued or running job is cancelled: its data goes, its record stays (status 'cancelled', for its TTL)
        and its worker stops at its next step. A finished job is removed whole. Returns the status it had.

        Works when Redis is full (maxmemory, noeviction): deletions come first, and the few small writes that
        follow are skipped if Redis still refuses them (the job is then removed whole)."""
        status = self.r.hget(self.job_key(job_id), "status") if _ID.match(job_id) else None
        if status is None:
            raise JobNotFound(f"no job '{job_id}' (unknown, expired or deleted)")
        idem, data, own = self.r.hmget(self.job_key(job_id), ["idem", "data", "own"])
        keys = []
        if data:  # the table, the packed blob, the index, and every tensor with a key of its own
            n = data.decode()
            keys += [self.data_key(job_id, n, part) for part in ("table", "packed", "index")]
            keys += [self.data_key(job_id, n, f"t:{k}") for k in json.loads(own or "[]")]
        active = status.decode() in ("queued", "running")
        whole = [self.job_key(job_id), self.done_key(job_id), self.cancel_key(job_id)]
        with self.r.pipeline(transaction=False) as p:  # a full Redis refuses MULTI, not deletions
            if keys or not active:  # one UNLINK (memory freed in the background: a big job never blocks Redis) of keys of the job's slot (a cluster pipeline has no multi-key delete())
                p.execute_command("UNLINK", *keys, *([] if active else whole))
            p.zrem(self.leases_key(), job_id)
            if not active:
                p.zrem(self.recent_key(), job_id)
            p.execute()
        if active:
            try:
                self._run("cancel", [self.job_key(job_id), self.done_key(job_id), self.cancel_key(job_id)], [
                    now_iso(), JobProgress(step="cancelled", fraction=0.0).model_dump_json(), self.ttl_s])
                return status.decode()
            except redis.exceptions.OutOfMemoryError:  # Redis full: the record goes too
                self.r.execute_command("UNLINK", *whole)
                self.r.zrem(self.recent_key(), job_id)
        if idem:  # the key's record is in another slot: released on its own, unless it names another job by now
            self._run("idem_release", [idem.decode()], [job_id, ""])
        return status.decode()

    def cancel_state(self, job_id: str) -> str | None:
        """'requested' or 'stopped' after a DELETE, else None."""
        v = self.r.get(self.cancel_key(job_id))
        return v.decode() if v else None

    def wait(self, job_id: str, timeout_s: float, slice_s: float = 1.0) -> None:
        """Block until the job is finished, gone, or `timeout_s` passed (a long poll: no result polling).

        Blocks on the job's `done` stream in slices of `slice_s`, checking between them that the job still
        exists, so that a deleted job's waiters return within a slice."""
        if not _ID.match(job_id):
            return
        deadline = time.monotonic() + timeout_s
        done = self.done_key(job_id)
        while (left := deadline - time.monotonic()) > 0:
            if self.r.xread({done: "0-0"}, count=1, block=max(1, int(min(left, slice_s) * 1000))):
                return
            if not self.r.exists(self.job_key(job_id)):
                return

    def tensor(self, job_id: str, engine: str | None, field: str, name: str) -> tuple[str, np.ndarray]:
        """(engine, full tensor): stored bytes, else the result's inline numbers; else TensorNotKept/NotFound.

        `engine` None means the primary engine (the first that ran).
        """
        if not _ID.match(job_id):
            raise JobNotFound(f"no job '{job_id}' (unknown, expired or deleted)")
        data = self._data.get(job_id, "1")  # most jobs are published by their first delivery
        for _ in range(2):
            reply = self._run("fetch", [self.job_key(job_id), self.data_key(job_id, data, "index"),
                                        self.data_key(job_id, data, "packed")], [engine or "", f"{field}/{name}", data])
            if len(reply) != 3:
                break
            if reply[2].decode() == data:
                raise JobNotFound(f"job '{job_id}' expired")
            data = reply[2].decode()  # published by another delivery: ask again with its keys, and remember it
            self._data[job_id] = data
            while len(self._data) > 1024:
                self._data.popitem(last=False)
        if not reply:
            raise JobNotFound(f"no job '{job_id}' (unknown, expired or deleted)")
        if len(reply) == 1:
            raise JobNotReady(reply[0].decode())
        engine, data, entry = reply[1].decode(), reply[2].decode(), reply[3] or None
        if entry is not None and not entry.startswith(b"!"):
            meta = parse_index_entry(entry)
            own = self.data_key(job_id, data, f"t:{array_key(engine, field, name)}")
            raw = reply[4] if meta.offset is not None else self.r.get(own)
            if raw is None or len(raw) != meta.nbytes:
                raise JobNotFound(f"job '{job_id}' expired")
            return engine, from_bytes(raw, meta.dtype, meta.shape)
        if entry:
            raise TensorNotKept(f"{field} of '{name}' from engine '{engine}' was {entry[1:].decode()}")
        raise TensorNotFound(missing_reason(self.table(job_id), engine, field, name))

    # worker side
    def deliver(self, job_id: str, max_attempts: int, lease_s: float = 30.0) -> Delivery:
        """Count a delivery and mark the job running under a lease of `lease_s` seconds, in one round trip (then
        index the lease for the reaper); see Delivery."""
        err = JobError(
            type="attempts_exhausted",
            message=f"gave up after {max_attempts} attempts: the worker running this job was lost each time",
        )
        now = time.time()
        lease = now + lease_s
        reply = self._run(
            "begin", [self.job_key(job_id), self.cancel_key(job_id), self.done_key(job_id)],
            [max_attempts, now_iso(), err.model_dump_json(), JobProgress(step="start", fraction=0.0).model_dump_json(),
             f"{lease:.3f}", f"{now:.3f}"],
        )
        if (reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])) == "running":
            self.r.zadd(self.leases_key(), {job_id: lease})
        state = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if state != "running":
            return Delivery(state, int(reply[1]))
        spec, ttl, cap = (reply + [None] * 5)[2:5]
        return Delivery(
            state, int(reply[1]), spec.decode() if spec else "{}",
            int(ttl) if ttl is not None else None, int(cap) if cap is not None else None,
        )

    def lease_left(self, job_id: str) -> float:
        """Seconds until the running job's lease runs out (0 when it has, or the job has none)."""
        lease = self.r.hget(self.job_key(job_id), "lease")
        return max(0.0, float(lease) - time.time()) if lease else 0.0

    def renew(self, job_id: str, attempt: int, lease_s: float) -> bool:
        """Extend delivery `attempt`'s lease by `lease_s` seconds from now; False when the job is no longer that
        delivery's to run (reclaimed, redelivered, cancelled, finished or gone)."""
        lease = time.time() + lease_s
        ok = bool(self._run("renew", [self.job_key(job_id), self.cancel_key(job_id)], [str(attempt), f"{lease:.3f}"]))
        if ok:
            self.r.zadd(self.leases_key(), {job_id: lease})
            # the lease keeper renews beside the job's own thread: a finish (which takes the job out of the index)
            # between the script and the ZADD above would leave a finished job indexed: checked after, not before
            if self.r.hget(self.job_key(job_id), "status") != b"running":
                self.r.zrem(self.leases_key(), job_id)
        return ok

    def expired(self, limit: int = 100) -> list[str]:
        """Jobs whose lease deadline has passed (candidates: reclaim() decides)."""
        return [j.decode() for j in self.r.zrangebyscore(self.leases_key(), "-inf", time.time(), start=0, num=limit)]

    def reclaim(self, job_id: str, max_attempts: int) -> str:
        """Requeue (or, at the attempt cap, fail) a running job whose lease ran out; 'requeued', 'failed' or 'alive'.
        The job leaves the lease index unless it is still alive with a lease in the future."""
        err = JobError(
            type="worker_lost",
            message=f"gave up after {max_attempts} attempts: the worker running this job stopped renewing its lease "
                    "(it died, or lost Redis) each time",
        )
        state = self._run(
            "reclaim", [self.job_key(job_id), self.cancel_key(job_id), self.done_key(job_id)],
            [f"{time.time():.3f}", max_attempts, err.model_dump_json(), now_iso(),
             JobProgress(step="requeued", fraction=0.0).model_dump_json()],
        )
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state != "alive" or self.r.hget(self.job_key(job_id), "status") != b"running":
            self.r.zrem(self.leases_key(), job_id)
        return state

    def progress(self, job_id: str, step: str, fraction: float) -> bool:
        """Record progress; False when the job was cancelled or deleted (the worker should stop)."""
        p = JobProgress(step=step, fraction=min(max(fraction, 0.0), 1.0)).model_dump_json()
        return bool(self._run("update", [self.job_key(job_id), self.cancel_key(job_id)], ["1", "progress", p]))

    def fail(self, job_id: str, type_: ErrorCode, message: str) -> bool:
        """Mark a queued/running job failed (status last); False when it is gone or already finished."""
        err = JobError(type=type_, message=message).model_dump_json()
        ok = bool(self._run(
            "update", [self.job_key(job_id), self.cancel_key(job_id), self.done_key(job_id)],
            ["0", "error", err, "finished_at", now_iso(), "status", "failed"],
        ))
        self.r.zrem(self.leases_key(), job_id)
        return ok

    def stopped(self, job_id: str) -> None:
        """Acknowledge a cancel flag: the worker has let go of the job."""
        self.r.set(self.cancel_key(job_id), "stopped", xx=True, keepttl=True)

    def finish(
        self, job_id: str, done: Trace, keep: str | list[str] | None, delivery: Delivery, max_result_bytes: int | None = None
    ) -> bool:
        """Store the result table and the kept tensors under the delivery's attempt number (pipelines of bounded
        size), then publish the summary, and for small graphs the whole result and manifest, in one script on the
        job's slot, status last, with the job's TTL and byte cap; False if cancelled, gone or finished (this
        delivery's keys are deleted).
        The job leaves the lease index in that last round trip, and then its Idempotency-Key record (each a key
        of its own slot) gets the job's new TTL."""
        jk, ck = self.job_key(job_id), self.cancel_key(job_id)
        ttl = delivery.ttl or self.ttl_s
        table = done.table
        cap = delivery.max_bytes if delivery.max_bytes is not None else self.max_job_bytes
        sel = select_tensors(done.arrays, keep, cap, table.inline_limit, lambda key: tensor_names(table, key))
        # one pass: tensors over PACK_BYTES get a key of their own, the rest go into one packed blob, an array
        # under several keys (a torch edge is often its source's grad) once
        own: list[str] = []
        packed: list[np.ndarray] = []
        offsets, offset = sel.offsets, 0
        first: dict[int, int] = {}
        for key, a in sel.chosen.items():
            nb = a.nbytes
            if nb > PACK_BYTES:
                own.append(key)
                continue
            o = first.get(id(a))
            if o is None:
                o = first[id(a)] = offset
                packed.append(a)
                offset += nb
            offsets[key] = o
        index = sel.index()
        table_json = table.to_json()  # tens of MB at 100k nodes: a plain SET below, never a script's argument
        fields = {
            "summary": table.summary_model().model_dump_json(), "finished_at": now_iso(),
            "engine": table.summary["engines"][0], "verdict": table.summary["comparison"]["verdict"],
            "progress": JobProgress(step="done", fraction=1.0).model_dump_json(), "data": delivery.attempt,
            "own": json.dumps(own),  # what DELETE removes besides table, pack and index (no read of the index)
        }
        if done.result_json is not None:  # a small job: its whole result and its manifest, as a job view shows them
            fields["result"] = done.result_json
            fields["manifest"] = sel.manifest_json()
        total = (sel.nbytes + len(table_json) + sum(len(str(v)) for v in fields.values())
                 + sum(map(len, index)) + sum(map(len, index.values())))
        if max_result_bytes is not None and total > max_result_bytes:
            raise ResultTooLarge(f"the result is {total / 2**20:.1f} MiB, over the cap of {max_result_bytes / 2**20:.0f} MiB "
                                 "(GRADTRACE_MAX_RESULT_BYTES)")
        # The table, tensors and index first, in a plain pipeline flushed every few MB: keys of this delivery only,
        # invisible until the job's `data` field names it, so no transaction is needed, and no single command
        # holds Redis long (one MULTI of a 100k-node job's writes did, past the API's 1.5 s timeout).
        written: list[str] = []
        with self.r.pipeline(transaction=False) as p:
            batch = 0

            def queue(key: str, nbytes: int, *commands: tuple[str, ...]) -> None:
                nonlocal batch
                if not written or written[-1] != key:
                    written.append(key)
                for cmd in commands:
                    p.execute_command(*cmd)
                batch += nbytes
                if batch >= WRITE_BATCH_BYTES:
                    p.execute()
                    batch = 0

            tk = self.data_key(job_id, delivery.attempt, "table")
            queue(tk, len(table_json), ("SET", tk, table_json, "EX", ttl))
            for key in own:
                k = self.data_key(job_id, delivery.attempt, f"t:{key}")
                queue(k, sel.chosen[key].nbytes, ("SET", k, to_bytes(sel.chosen[key]), "EX", ttl))
            if packed:
                pk = self.data_key(job_id, delivery.attempt, "packed")
                queue(pk, offset, ("SET", pk, b"".join(map(to_bytes, packed)), "EX", ttl))
            if index:
                ik = self.data_key(job_id, delivery.attempt, "index")
                items = list(index.items())
                for i in range(0, len(items), INDEX_BATCH):
                    part = items[i : i + INDEX_BATCH]
                    queue(ik, sum(map(len, (x for kv in part for x in kv))), ("HSET", ik, *[x for kv in part for x in kv]))
                p.expire(ik, ttl)
            # then publish, atomically (one script on the job's slot), after the writes above in the same last
            # round trip: status check, result fields, status last; a cancelled, gone or finished job gets the keys
            # written above deleted instead. EVAL by execute_command: a cluster pipeline has no eval().
            p.execute_command("EVAL", FINISH, 3 + len(written), jk, ck, self.done_key(job_id), *written, ttl,
                              *[x for kv in fields.items() for x in kv])
            p.zrem(self.leases_key(), job_id)  # the job leaves the lease index, published or not (its own slot)
            published = p.execute()[-2]
        if isinstance(published, bytes):  # the name of the job's Idempotency-Key record
            self._run("idem_release", [published.decode()], [job_id, ttl])
        return bool(published)


def tensor_names(table: ResultTable, key: str) -> tuple[str, ...]:
    """The node names an array key belongs to: its node, or an edge's two ends."""
    _, field, rest = key.split("/", 2)
    if field == "edge":
        e = int(rest)
        return table.names[table.edge_src[e]], table.names[table.edge_dst[e]]
    return (rest,)
