"""The async client: the same API awaited, from a DSN, an AsyncConnection and an async pool;
concurrent appends to one conversation keep seq gap-free; transactions are all or nothing."""
import asyncio
import uuid

import psycopg
import pytest
from conftest import claims, dsn, new_user
from psycopg_pool import AsyncConnectionPool

from memory_ext import AsyncMemoryClient, InvalidInputError, NotFoundError, Window

AGENT = uuid.UUID("a0000000-0000-0000-0000-000000000002")


def run(coro):
    return asyncio.run(coro)


def test_async_api_from_a_dsn(db):
    async def main():
        async with AsyncMemoryClient(dsn(db), user_id=new_user()) as c:
            conv = await c.create_conversation(AGENT, "async")
            await c.add_message(conv.id, "user", "hello")
            await c.add_messages(conv.id, [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "bye"}])
            page = await c.get_messages(conv.id, 10)
            window = await c.build_context(conv.id, 100)
            with pytest.raises(NotFoundError):
                await c.as_user(new_user()).build_context(conv.id, 100)
            with pytest.raises(InvalidInputError):
                await c.add_message(conv.id, "nobody", "x")
            return page, window
    page, window = run(main())
    assert [m.content for m in page.messages] == ["hello", "hi", "bye"]
    assert isinstance(window, Window) and window.included_messages == 3


def test_async_concurrent_appends_and_transactions(db):
    async def main():
        async with AsyncConnectionPool(dsn(db), min_size=4, max_size=4, kwargs={"autocommit": True}) as pool:
            c = AsyncMemoryClient(pool, user_id=new_user())
            conv = await c.create_conversation(AGENT)

            async def writer(w):
                for i in range(10):
                    await c.add_message(conv.id, "user", f"w{w} m{i}")
            await asyncio.gather(*(writer(w) for w in range(4)))
            seqs = [m.seq for m in await c.all_messages(conv.id)]
            with pytest.raises(InvalidInputError):
                async with c.transaction() as tx:
                    await tx.add_message(conv.id, "user", "rolled back")
                    await tx.add_message(conv.id, "tool", "x", tool_call_id="none")
            async with c.transaction() as tx:
                await tx.add_message(conv.id, "user", "committed")
            return seqs, [m.content for m in await c.all_messages(conv.id)][-1], len(await c.all_messages(conv.id))
    seqs, last, n = run(main())
    assert seqs == list(range(1, 41)) and last == "committed" and n == 41


def test_async_connection_and_jwt_identity(db):
    uid = new_user()

    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db, "authenticator"), autocommit=True) as conn:
            c = AsyncMemoryClient(conn, claims=claims(uid))
            assert str(await c.current_user_id()) == uid
            conv = await c.create_conversation(AGENT)
            assert (await c.get_conversation(conv.id)).user_id == uuid.UUID(uid)
            # transaction-local: the connection has no role or claims left
            row = await (await conn.execute("SELECT current_user, current_setting('request.jwt.claims', true)")).fetchone()
            return row
    who, leftover = run(main())
    assert who == "authenticator" and leftover in (None, "")
