"""kombu's Redis transport, publishing through one Redis client per channel.

kombu 5.7 builds a new redis.Redis (with its command-callback tables) for every message it sends, a third of
the API's POST of a small job; the client draws its connections from the channel's pool either way, and a
redis.Redis is safe to share between threads. The cached client goes with the channel's pools (after a fork
or on close)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A Redis channel whose commands without a client of their own share one."""

    _publisher: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._publisher is None:
            self._publisher = self._create_client()
        yield self._publisher

    def _disconnect_pools(self) -> None:
        self._publisher = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    """The Redis transport with that channel (Celery's `broker_transport` for redis:// brokers)."""

    Channel = Channel
