"""MemoryClient (sync) and AsyncMemoryClient: run the operations of `calls` on a connection, a
pool or a DSN, each call in one transaction that first asserts the caller's identity.

Identity, set per call with transaction-local settings (nothing leaks to the next user of a
pooled connection):
- `user_id=`: `memory.user_id`, for an application server whose login the operator listed in
  `memory.user_id_roles`;
- `claims=` (and `role=`, default `claims["role"]`): exactly what PostgREST does, `SET LOCAL
  ROLE` plus `request.jwt.claims`, for a login listed in `memory.jwt_gateway_roles`;
- neither: whatever the session already is (a login bound by `memory.login_user_id`).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import psycopg
from psycopg.rows import dict_row

from . import calls
from .calls import Call
from .errors import ConnectionInTransactionError, translate


class Identity:
    """Who the calls run as (see the module's docstring)."""

    def __init__(self, user_id: Any = None, claims: Optional[Mapping[str, Any]] = None, role: Optional[str] = None):
        self.user_id = str(calls.as_uuid(user_id, "user_id")) if user_id is not None else None
        self.claims = json.dumps(dict(claims)) if claims is not None else None
        self.role = role if role is not None else (claims or {}).get("role")

    def statement(self) -> Optional[Tuple[str, Dict[str, Any]]]:
        parts, params = [], {}
        for setting, key, value in (("role", "role", self.role), ("request.jwt.claims", "claims", self.claims),
                                    ("memory.user_id", "user_id", self.user_id)):
            if value is not None:
                parts.append(f"set_config('{setting}', %({key})s, true)")
                params[key] = value
        return (f"SELECT {', '.join(parts)}", params) if parts else None


def _operation(build):
    """A client method from a call builder: same name, signature and documentation."""
    @functools.wraps(build)
    def method(self, *args, **kwargs):
        return self.run(build(*args, **kwargs))
    return method


class _Api:
    """Every operation of `memory_ext.calls` as a method. In MemoryClient a method returns the
    result; in AsyncMemoryClient it returns an awaitable of it."""

    def run(self, *batch: Call) -> Any:  # pragma: no cover - defined by the subclasses
        raise NotImplementedError


for _build in calls.OPERATIONS:
    setattr(_Api, _build.__name__, _operation(_build))


def _result(batch, results):
    return results[0] if len(batch) == 1 else results


def _prepare(identity: Optional[Identity], batch) -> list:
    """The statements of one transaction, each with the call whose result it is (or None): the
    identity, then each call's steps."""
    first = identity.statement() if identity else None
    steps = [(first[0], first[1], None)] if first else []
    for c in batch:
        steps += [(q, p, None) for q, p in c.before] + [(c.query, c.params, c)]
    return steps


class MemoryClient(_Api):
    """Synchronous client. `source`: a DSN string, a psycopg `Connection` (used by one call at a
    time) or a `psycopg_pool.ConnectionPool`. With a DSN the client owns a small pool; close it
    with `close()` or a `with` block."""

    def __init__(self, source: Union[str, psycopg.Connection, Any], *, user_id: Any = None,
                 claims: Optional[Mapping[str, Any]] = None, role: Optional[str] = None, max_connections: int = 4):
        self._identity = Identity(user_id, claims, role)
        self._owned = None
        self._bound: Optional[psycopg.Connection] = None
        if isinstance(source, str):
            from psycopg_pool import ConnectionPool
            self._owned = ConnectionPool(source, min_size=1, max_size=max_connections,
                                         kwargs={"autocommit": True}, open=True)
            self._pool = self._owned
        elif isinstance(source, psycopg.Connection):
            self._pool = _SingleConnection(source)
        else:
            self._pool = source

    def as_user(self, user_id: Any = None, *, claims: Optional[Mapping[str, Any]] = None,
                role: Optional[str] = None) -> "MemoryClient":
        """The same connections, another identity (e.g. per web request)."""
        other = object.__new__(MemoryClient)
        other.__dict__.update(self.__dict__)
        other._identity, other._owned = Identity(user_id, claims, role), None
        return other

    def run(self, *batch: Call) -> Any:
        """Runs the calls in one transaction (one result, or a list for several)."""
        if self._bound is not None:
            return _result(batch, self._steps(self._bound, _prepare(None, batch)))
        try:
            # pipeline mode: BEGIN, the identity and the calls travel together. Statements are
            # prepared as psycopg decides (connect with prepare_threshold=None behind a
            # transaction-mode pooler such as PgBouncer or Supavisor)
            with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                return _result(batch, self._steps(conn, _prepare(self._identity, batch)))
        except psycopg.Error as e:
            raise translate(e) from e

    def _steps(self, conn, steps) -> list:
        results = []
        for query, params, call in steps:
            rows = self._execute(conn, query, params, call is not None)
            if call:
                results.append(call.decode(rows))
        return results

    @staticmethod
    def _execute(conn, query, params, fetch: bool = True) -> list:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                return cur.fetchall() if fetch else []
        except psycopg.Error as e:
            raise translate(e) from e

    @contextlib.contextmanager
    def transaction(self) -> Iterator["MemoryClient"]:
        """A client whose calls share one transaction: all of them commit, or none."""
        if self._bound is not None:
            yield self
            return
        try:
            with self._pool.connection() as conn, conn.transaction():
                bound = self.as_user()
                bound.__dict__.update(_identity=self._identity, _bound=conn)
                self._steps(conn, _prepare(self._identity, []))
                yield bound
        except psycopg.Error as e:
            raise translate(e) from e

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> "MemoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _idle(conn) -> None:
    """Refuses a caller's connection that is inside a transaction (see ConnectionInTransactionError)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ConnectionInTransactionError(
            "memory_ext: the connection is inside a transaction; the client runs each call in a transaction of "
            "its own", "25001",
            "Commit or roll back first, use an autocommit connection, or group calls with client.transaction().")


class _SingleConnection:
    """A caller's connection as a one-connection pool: one call at a time, never inside a
    transaction of the caller's."""

    def __init__(self, conn):
        self._conn, self._lock = conn, threading.Lock()

    @contextlib.contextmanager
    def connection(self):
        with self._lock:
            _idle(self._conn)
            yield self._conn


class _AsyncSingleConnection:
    def __init__(self, conn):
        self._conn, self._lock = conn, asyncio.Lock()

    @contextlib.asynccontextmanager
    async def connection(self):
        async with self._lock:
            _idle(self._conn)
            yield self._conn


class _OwnedAsyncPool:
    """The pool an AsyncMemoryClient made from a DSN, opened on first use (an async pool cannot
    open in a constructor), shared with the clients `as_user` derives."""

    def __init__(self, dsn: str, max_connections: int):
        from psycopg_pool import AsyncConnectionPool
        self.pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_connections, kwargs={"autocommit": True},
                                        open=False)
        self.opened = False

    async def open(self) -> None:
        if not self.opened:
            self.opened = True
            await self.pool.open()

    async def close(self) -> None:
        if self.opened:
            await self.pool.close()


class AsyncMemoryClient(_Api):
    """Asynchronous client: the same methods, awaited. `source`: a DSN string, a psycopg
    `AsyncConnection` or a `psycopg_pool.AsyncConnectionPool`."""

    def __init__(self, source: Union[str, psycopg.AsyncConnection, Any], *, user_id: Any = None,
                 claims: Optional[Mapping[str, Any]] = None, role: Optional[str] = None, max_connections: int = 4):
        self._identity = Identity(user_id, claims, role)
        self._owned: Optional[_OwnedAsyncPool] = None
        self._bound = None
        if isinstance(source, str):
            self._owned = _OwnedAsyncPool(source, max_connections)
            self._pool = self._owned.pool
        elif isinstance(source, psycopg.AsyncConnection):
            self._pool = _AsyncSingleConnection(source)
        else:
            self._pool = source
        self._root = True

    def as_user(self, user_id: Any = None, *, claims: Optional[Mapping[str, Any]] = None,
                role: Optional[str] = None) -> "AsyncMemoryClient":
        other = object.__new__(AsyncMemoryClient)
        other.__dict__.update(self.__dict__)
        other._identity, other._root = Identity(user_id, claims, role), False
        return other

    async def _open(self) -> None:
        if self._owned is not None:
            await self._owned.open()

    async def run(self, *batch: Call) -> Any:
        if self._bound is not None:
            return _result(batch, await self._steps(self._bound, _prepare(None, batch)))
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                return _result(batch, await self._steps(conn, _prepare(self._identity, batch)))
        except psycopg.Error as e:
            raise translate(e) from e

    async def _steps(self, conn, steps) -> list:
        results = []
        for query, params, call in steps:
            rows = await self._execute(conn, query, params, call is not None)
            if call:
                results.append(call.decode(rows))
        return results

    @staticmethod
    async def _execute(conn, query, params, fetch: bool = True) -> list:
        try:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall() if fetch else []
        except psycopg.Error as e:
            raise translate(e) from e

    @contextlib.asynccontextmanager
    async def transaction(self):
        """`async with client.transaction() as tx:` — tx's calls commit together or not at all."""
        if self._bound is not None:
            yield self
            return
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                bound = self.as_user()
                bound.__dict__.update(_identity=self._identity, _bound=conn)
                await self._steps(conn, _prepare(self._identity, []))
                yield bound
        except psycopg.Error as e:
            raise translate(e) from e

    async def close(self) -> None:
        if self._owned is not None and self._root:
            await self._owned.close()

    async def __aenter__(self) -> "AsyncMemoryClient":
        await self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
