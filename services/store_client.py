"""The store's Redis client: a plain `redis.Redis`, or a `redis.cluster.RedisCluster` when the settings say the
store is a Redis Cluster (REDIS_CLUSTER=1, or a redis+cluster:// / rediss+cluster:// URL).

    redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]

names one or more seed nodes (the client discovers the others from them); rediss+cluster:// is the same over TLS.
A cluster has only db 0. The Celery broker is never a cluster: it stays a plain Redis (or AMQP) URL."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

from shared.settings import CLUSTER_SCHEMES

StoreClient = redis.Redis | RedisCluster
"""What the store talks to."""


def cluster_seeds(url: str) -> tuple[str, list[ClusterNode]]:
    """A redis+cluster:// URL as a plain redis:// (or rediss://) URL of its first seed node (which carries the
    credentials, TLS and query options) and the other seed nodes."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"not a Redis URL: {url!r}")
    plain = scheme.removesuffix("+cluster")
    if plain not in ("redis", "rediss"):
        raise ValueError(f"a Redis Cluster URL is redis(s)://, or redis(s)+cluster://, not {scheme}://")
    parts = urlsplit(f"{plain}://{url[len(scheme) + 3:]}")
    auth, at, hosts = parts.netloc.rpartition("@")
    first, *others = [h for h in hosts.split(",") if h]
    if not first:
        raise ValueError(f"no host in {url!r}")
    seeds = []
    for h in others:
        host, _, port = h.rpartition(":") if ":" in h else (h, "", "6379")
        seeds.append(ClusterNode(host.strip("[]"), int(port)))
    return urlunsplit((plain, f"{auth}{at}{first}", parts.path, parts.query, "")), seeds


def connect(url: str, cluster: bool, timeout_s: float) -> StoreClient:
    """A client for the store at `url`: a cluster client when `cluster` (or the URL says so). Every call is bounded
    by `timeout_s`. A plain client connects on first use; a cluster client discovers its nodes at once (so the
    store creates it on first use: see JobStore)."""
    kwargs = {"socket_connect_timeout": min(2.0, timeout_s), "socket_timeout": timeout_s}
    if not cluster and url.partition("://")[0] not in CLUSTER_SCHEMES:
        return redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
    plain, seeds = cluster_seeds(url)
    return RedisCluster.from_url(plain, startup_nodes=seeds, **kwargs)
