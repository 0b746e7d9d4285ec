"""The store's key layout: every key of one job carries the job id as its hash tag, so that on a Redis Cluster
all of them live in one slot (the store's Lua scripts and transactions only ever touch one job's keys).

    gradtrace:{<id>}:job                      the job's hash (status fields, spec, result table, manifest)
    gradtrace:{<id>}:done                     a stream with one entry once the job is finished (long polls)
    gradtrace:{<id>}:cancel                   the cancel flag: 'requested', then 'stopped'
    gradtrace:{<id>}:<attempt>:packed         the small tensors one delivery stored, packed in one string
    gradtrace:{<id>}:<attempt>:index          where each stored tensor is (own key or offset in the pack)
    gradtrace:{<id>}:<attempt>:t:<e>/<f>/<n>  a tensor over PACK_BYTES, in a key of its own

Some keys are not a job's, each a single key in a slot of its own: `gradtrace:recent` and `gradtrace:leases`
(sorted sets of job ids), `gradtrace:idem:<sha256 of an Idempotency-Key>` (-> 'job_id spec_digest') and
`gradtrace:owner:<digest of an API token>` (a sorted set of that token's job ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyLayout:
    """Key names under `prefix` (which must not contain braces: the first {...} of a key is its hash tag)."""

    prefix: str = "gradtrace"

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix may not contain braces: {self.prefix!r}")

    def tag(self, job_id: str) -> str:
        """What every key of the job starts with: the prefix and the job's hash tag."""
        if "{" in job_id or "}" in job_id:
            raise ValueError(f"not a job id: {job_id!r}")
        return f"{self.prefix}:{{{job_id}}}"

    def job(self, job_id: str) -> str:
        """The job's hash."""
        return f"{self.tag(job_id)}:job"

    def done(self, job_id: str) -> str:
        """A stream that gets one entry when the job is finished (succeeded or failed): what GET ?wait= blocks on."""
        return f"{self.tag(job_id)}:done"

    def cancel(self, job_id: str) -> str:
        """The cancel flag: 'requested', then 'stopped' once a worker let go of the job."""
        return f"{self.tag(job_id)}:cancel"

    def data(self, job_id: str, attempt: int | str, part: str) -> str:
        """A key of the tensors one delivery stored: `part` is 'packed', 'index' or 't:engine/field/name'.

        Each delivery writes under its own attempt number, so that a late duplicate delivery that finds the
        job already finished removes only its own keys (the hash's `data` field names the published one)."""
        return f"{self.tag(job_id)}:{attempt}:{part}"

    def pattern(self, job_id: str) -> str:
        """A SCAN pattern that matches every key of the job (and nothing else)."""
        return f"{self.tag(job_id)}:*"

    def idem(self, key: str) -> str:
        """An Idempotency-Key (hashed) -> 'job_id spec_digest'. Not a job's key: it has a slot of its own."""
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    def recent(self) -> str:
        """A sorted set of recent job ids by creation time (for the job list)."""
        return f"{self.prefix}:recent"

    def owner(self, owner: str) -> str:
        """A sorted set of one API token's job ids (owner: a digest of the token), for its limit on unfinished jobs."""
        return f"{self.prefix}:owner:{owner}"

    def leases(self) -> str:
        """A sorted set of running jobs by lease deadline: where the reaper looks (an index: the job's hash decides)."""
        return f"{self.prefix}:leases"
