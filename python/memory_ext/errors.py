"""Exceptions raised by the client, chosen by the SQLSTATE memory_ext reports.

Every exception is a `MemoryExError` carrying `sqlstate`, `hint` and the psycopg error as
`__cause__`; catch the subclasses for the cases an application handles differently."""
from __future__ import annotations

import re
from typing import Optional

import psycopg


class MemoryExError(Exception):
    """Any error memory_ext reported (or the server reported while running a call)."""

    def __init__(self, message: str, sqlstate: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.hint = hint


class ConnectionInTransactionError(MemoryExError):
    """25001: the connection handed to the client is inside a transaction of the application's.
    The client's calls set the caller's identity with transaction-local settings; inside someone
    else's transaction those would outlive the call and apply to the application's own next
    statements, so the client refuses such a connection."""


class NotFoundError(MemoryExError):
    """P0002: no such conversation, agent or job, or it is not the caller's (the two look alike)."""


class InvalidInputError(MemoryExError, ValueError):
    """22023 / 22004 / 22P02 / 23502 / 23514 / 54000: bad arguments; nothing was written."""


class PermissionDeniedError(MemoryExError, PermissionError):
    """42501: no identity, or the caller may not do this."""


class ConflictError(MemoryExError):
    """23505: an idempotency key reused for a different message, or an id taken by another user."""


class LimitExceededError(MemoryExError):
    """PT429: over a per-user limit or the provider's rate limit. `retry_after` is in seconds."""

    def __init__(self, message: str, sqlstate: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message, sqlstate, hint)
        self.retry_after = _retry_seconds(hint) or _retry_seconds(message)


class LLMError(MemoryExError):
    """PT502 / PT504 / PT422: the LLM provider failed, timed out or refused; nothing was written."""


class LLMTimeoutError(LLMError, TimeoutError):
    """PT504: no whole answer within memory.llm_timeout."""


class LLMRefusalError(LLMError):
    """PT422: the model refused to answer."""


class ReadOnlyError(MemoryExError):
    """25006: a write in a read-only transaction or on a hot standby."""


class ArchivedError(MemoryExError):
    """55000: the conversation is archived (unarchive_conversation reopens it)."""


_BY_SQLSTATE = {
    "P0002": NotFoundError,
    "22023": InvalidInputError,
    "22004": InvalidInputError,
    "22P02": InvalidInputError,
    "23502": InvalidInputError,
    "23514": InvalidInputError,
    "54000": InvalidInputError,
    "42501": PermissionDeniedError,
    "23505": ConflictError,
    "PT429": LimitExceededError,
    "PT502": LLMError,
    "PT504": LLMTimeoutError,
    "PT422": LLMRefusalError,
    "25006": ReadOnlyError,
    "55000": ArchivedError,
}


def _retry_seconds(text: Optional[str]) -> Optional[float]:
    m = re.search(r"[Rr]etry in (\d+(?:\.\d+)?) seconds?", text or "")
    return float(m.group(1)) if m else None


def translate(err: psycopg.Error) -> MemoryExError:
    """The MemoryExError for a psycopg error (call as `raise translate(e) from e`)."""
    diag = err.diag
    cls = _BY_SQLSTATE.get(err.sqlstate or "", MemoryExError)
    return cls(diag.message_primary or str(err), err.sqlstate, diag.message_hint)
