"""Coalescing leases in Redis: ``SET NX PX`` to lead, pub/sub to say "done" (see :mod:`.leases`).

Keys: ``llm-cache:lease:<sha256>`` holds the leader's random token and expires after the
policy's ttl unless renewed; ``llm-cache:lease-done:<sha256>`` is the channel a leader
publishes on when it releases. Renew and release check the token (a Lua script), so a
leader whose lease lapsed never extends or deletes its successor's.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._imports import require
from .leases import LeasePolicy

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end redis.call('publish', KEYS[2], '1') return 1"


class _RedisSession:
    def __init__(self, client: Any, pubsub: Any, name: str, policy: LeasePolicy) -> None:
        self._client = client
        self._pubsub = pubsub
        self._key = f"llm-cache:lease:{name}"
        self._channel = f"llm-cache:lease-done:{name}"
        self._token = secrets.token_hex(16)
        self._ttl_ms = max(1, int(policy.ttl * 1000))

    async def acquire(self) -> bool:
        return bool(await self._client.set(self._key, self._token, nx=True, px=self._ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._client.eval(_RENEW, 1, self._key, self._token, self._ttl_ms))

    async def wait(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                return

    async def release(self) -> None:
        await self._client.eval(_RELEASE, 2, self._key, self._channel, self._token)

    async def close(self) -> None:
        try:
            await self._pubsub.aclose()
        except Exception:  # noqa: BLE001 - best effort
            pass


class RedisLeaseStore:
    """Leases in the Redis server of a ``redis://`` cache URL (its query options are ignored)."""

    def __init__(self, url: str, policy: LeasePolicy) -> None:
        require("redis", "redis", "coalescing on Redis")
        self.policy = policy
        self._url = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:  # made on the proxy's event loop, which it then belongs to
            import redis.asyncio

            timeout = self.policy.op_timeout
            self._client = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        return self._client

    async def session(self, name: str) -> _RedisSession:
        client = self._redis()
        pubsub = client.pubsub()
        session = _RedisSession(client, pubsub, name, self.policy)
        try:
            await pubsub.subscribe(session._channel)  # before acquiring: no "done" is missed
        except BaseException:
            await session.close()
            raise
        return session

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
