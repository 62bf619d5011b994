"""The service's Redis client fails fast: the order-rate check runs under the account lock."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from execsvc.bootstrap import redis_client


async def test_a_redis_that_stops_answering_fails_a_command_in_two_seconds_without_retrying() -> None:
    client = redis_client("redis://127.0.0.1:6379/0")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 2.0  # redis-py's default is 5 s
        assert kwargs["socket_connect_timeout"] == 1.0
        retry = client.get_retry()
        assert retry is not None
        assert retry.get_retries() == 1  # redis-py's default is 10, with backoff
        assert RedisConnectionError in retry._supported_errors
        assert RedisTimeoutError not in retry._supported_errors
    finally:
        await client.aclose()
