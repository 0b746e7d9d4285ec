"""Per-token limits on unfinished jobs: each token's job ids in one sorted set, counted against the jobs' status."""

from __future__ import annotations

import hashlib
import time

from services.store import JobStore

UNFINISHED = (b"queued", b"running")


def owner_id(token: str) -> str:
    """A token's name in the store: a digest, so that no token is ever written to Redis."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def unfinished(store: JobStore, owner: str) -> int:
    """How many of `owner`'s jobs are queued or running; finished, cancelled and expired ones leave the set."""
    key = store.keys.owner(owner)
    ids = [i.decode() for i in store.r.zrange(key, 0, -1)]
    if not ids:
        return 0
    with store.r.pipeline(transaction=False) as p:  # on a cluster: one batch per node, no cross-slot command
        for job_id in ids:
            p.hget(store.job_key(job_id), "status")
        statuses = p.execute()
    done = [j for j, st in zip(ids, statuses, strict=True) if st not in UNFINISHED]
    if done:
        store.r.zrem(key, *done)
    return len(ids) - len(done)


def record(store: JobStore, owner: str, job_id: str) -> None:
    """Count `job_id` against `owner` (the set lives as long as a job does)."""
    key = store.keys.owner(owner)
    with store.r.pipeline(transaction=False) as p:
        p.zadd(key, {job_id: time.time()})
        p.expire(key, store.ttl_s)
        p.execute()
