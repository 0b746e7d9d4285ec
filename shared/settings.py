"""One settings object for the API, worker, store and CLI, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
"""URL schemes that name a Redis Cluster (services.store_client)."""
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
"""URL schemes that name RabbitMQ as the broker (worker.queue.broker_settings)."""


class Settings(BaseSettings):
    """Environment variables are `GRADTRACE_<FIELD>`; REDIS_URL, REDIS_CLUSTER and BROKER_URL are also read bare."""

    model_config = SettingsConfigDict(env_prefix="GRADTRACE_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=AliasChoices("GRADTRACE_REDIS_URL", "REDIS_URL"))
    redis_cluster: bool = Field(
        False, validation_alias=AliasChoices("GRADTRACE_REDIS_CLUSTER", "REDIS_CLUSTER"),
        description="The store (REDIS_URL) is a Redis Cluster; a redis+cluster:// or rediss+cluster:// REDIS_URL says "
        "so too. The broker then needs a URL of its own (BROKER_URL): Celery's broker is never a cluster.",
    )
    broker_url: str | None = Field(
        None, validation_alias=AliasChoices("GRADTRACE_BROKER_URL", "BROKER_URL"),
        description="Celery's broker: unset or empty, the store's Redis (zero setup); "
        "`amqp://user:pass@host:5672/vhost` for RabbitMQ (quorum queues, publisher confirms: see worker/queue.py).",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="Where the CLI client finds the API.")
    bind: str = Field("127.0.0.1:8000", description="The API's bind address (gunicorn).")
    api_workers: int = Field(2, ge=1, description="gunicorn worker processes.")
    api_threads: int = Field(8, ge=1, description="Threads per gunicorn worker: concurrent requests, long polls included.")
    result_ttl_s: int = Field(24 * 3600, ge=1)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_nodes: int = Field(
        10_000, ge=1, description="Op nodes per graph: the API compiles the largest allowed spec in well under a second."
    )
    max_tensor_elements: int = Field(16_000_000, ge=1)
    max_total_elements: int = Field(64_000_000, ge=1)
    inline_limit: int = Field(1024, ge=0, description="Tensors up to this many elements are inline in JSON.")
    result_full_nodes: int = Field(
        2000, ge=0, description="Jobs with up to this many nodes get the whole result in GET /v1/jobs/{id}; "
        "larger ones a summary (page through the node listing)."
    )
    graph_draw_nodes: int = Field(
        500, ge=1, description="The most nodes GET /graph draws as SVG/DOT (larger graphs: format=json, or around=NODE)."
    )
    max_job_bytes: int = Field(
        256 * 1024 * 1024, ge=0,
        description="Cap on a job's stored large tensors (over the inline limit): past it they keep their summary only.",
    )
    max_result_bytes: int = Field(
        256 * 1024 * 1024, ge=1,
        description="Cap on everything a job stores (small tensors, kept large ones, table, JSON): a spec estimated "
        "over it is a 422, a result that grows over it fails as result_too_large.",
    )
    max_worker_bytes: int = Field(
        6 * 1024**3, ge=1,
        description="Estimated peak memory of a worker for one job: a spec estimated over it is a 422; a worker child "
        "that grew past it is replaced after its job.",
    )
    soft_time_limit_s: int = Field(300, ge=1)
    hard_time_limit_s: int = Field(330, ge=1)
    visibility_timeout_s: int = Field(
        3600, ge=1, description="Redis broker only: an unacknowledged message goes back to the queue after this. "
        "RabbitMQ's counterpart is the server's consumer_timeout (rabbitmq.conf, in ms), set above the hard limit.",
    )
    max_attempts: int = Field(3, ge=1, description="Deliveries of one job before it is failed.")
    worker_torch_threads: int = Field(1, ge=1)
    progress_interval_s: float = Field(
        0.25, ge=0, description="A worker writes progress (and checks for a cancel) at most this often."
    )
    api_redis_timeout_s: float = Field(
        1.5, gt=0, description="The API's Redis socket timeout: a stalled or unreachable Redis is a 503 within this."
    )
    broker_timeout_s: float = Field(
        2.0, gt=0, description="Connect, socket and publish-confirm timeout towards the broker (Redis or RabbitMQ): "
        "the API answers 503 within a few of these when the broker is down or stalled.",
    )
    lease_s: float = Field(
        20.0, gt=0, description="A running job's lease: its worker renews it every third of this; a job whose lease ran "
        "out (its worker, message or Redis went away) is requeued by the reaper, or failed at the attempt cap."
    )
    reaper_interval_s: float = Field(5.0, gt=0, description="How often each worker looks for jobs whose lease ran out.")
    api_tokens: str = Field(
        "", description="Comma-separated bearer tokens: when set, every /v1 route needs `Authorization: Bearer "
        "<token>` (401 otherwise); health routes and the page's assets stay open. Empty: no authentication."
    )
    max_unfinished_per_token: int = Field(
        100, ge=0, description="With api_tokens: a token's queued and running jobs at most; one more is a 429 "
        "with Retry-After (0: no limit)."
    )

    @property
    def tokens(self) -> frozenset[str]:
        """The accepted API tokens (empty: authentication is off)."""
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())

    @property
    def broker_is_amqp(self) -> bool:
        """True when the broker is RabbitMQ (an amqp://, amqps:// or pyamqp:// URL), False for Redis."""
        return (self.broker_url or "").split("://", 1)[0].lower() in AMQP_SCHEMES

    @model_validator(mode="after")
    def _limits(self) -> Settings:
        if self.redis_url.partition("://")[0] in CLUSTER_SCHEMES:
            self.redis_cluster = True
        # unset and empty are the same (compose passes `${BROKER_URL:-}`): the store's Redis, unless it is a cluster
        if self.redis_cluster and (not self.broker_url or self.broker_url.partition("://")[0] in CLUSTER_SCHEMES):
            raise ValueError("the store is a Redis Cluster: set BROKER_URL to a plain Redis (or AMQP) URL for Celery")
        if not self.broker_url:
            self.broker_url = self.redis_url
        if not self.soft_time_limit_s < self.hard_time_limit_s < self.visibility_timeout_s:
            raise ValueError("need soft_time_limit_s < hard_time_limit_s < visibility_timeout_s")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
