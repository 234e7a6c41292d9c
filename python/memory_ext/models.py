"""Typed results. Each is built from the row or JSON object memory_ext returns; keys a newer
server adds are ignored, so an older client keeps working."""
from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


def _from(cls: Type[T], data: Dict[str, Any], **override: Any) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in {**data, **override}.items() if k in names})


def _uuid(v: Any) -> Optional[uuid.UUID]:
    return v if v is None or isinstance(v, uuid.UUID) else uuid.UUID(str(v))


def _time(v: Any) -> Optional[datetime.datetime]:
    return v if v is None or isinstance(v, datetime.datetime) else datetime.datetime.fromisoformat(v)


@dataclasses.dataclass
class Conversation:
    id: uuid.UUID
    agent_id: uuid.UUID
    user_id: uuid.UUID
    title: Optional[str]
    encoding: str
    total_tokens: int
    message_count: int
    last_seq: int
    metadata: Dict[str, Any]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    archived_at: Optional[datetime.datetime] = None
    # list_conversations only: what the caller is to it ('owner', 'editor' or 'viewer')
    access: Optional[str] = None

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "Conversation":
        return _from(cls, d)


@dataclasses.dataclass
class Message:
    """A stored message. `tool_calls` is the OpenAI array (or the combined call+result records)."""
    id: uuid.UUID
    conversation_id: Optional[uuid.UUID]
    seq: int
    role: str
    content: str
    token_count: int
    name: Optional[str] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_call_id: Optional[str] = None
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: Optional[datetime.datetime] = None
    idempotency_key: Optional[str] = None

    @classmethod
    def parse(cls, d: Dict[str, Any], conversation_id: Any = None) -> "Message":
        # rows come typed from psycopg; objects inside JSON results carry strings and leave out
        # the conversation id the caller already knows
        return _from(cls, d, id=_uuid(d["id"]), conversation_id=_uuid(d.get("conversation_id", conversation_id)),
                     created_at=_time(d.get("created_at")), metadata=d.get("metadata") or {})

    def to_openai(self) -> Dict[str, Any]:
        """The message as /chat/completions takes it (stored fields only)."""
        m: Dict[str, Any] = {"role": self.role, "content": self.content}
        for key in ("name", "tool_calls", "tool_call_id"):
            if getattr(self, key) is not None:
                m[key] = getattr(self, key)
        return m


@dataclasses.dataclass
class MessagePage:
    """One page of `get_messages`: oldest to newest; `next_before_seq` fetches the page before."""
    messages: List[Message]
    has_more: bool
    next_before_seq: Optional[int]

    @classmethod
    def parse(cls, d: Dict[str, Any], conversation_id: Any = None) -> "MessagePage":
        return cls([Message.parse(m, conversation_id) for m in d["messages"]], d["has_more"], d.get("next_before_seq"))


@dataclasses.dataclass
class Window:
    """build_context's result. `messages` is the OpenAI messages array, ready to send."""
    messages: List[Dict[str, Any]]
    token_count: int
    max_tokens: int
    encoding: str
    included_messages: int
    omitted_messages: int
    summary_included: bool
    unsummarized_omitted: int
    overflow: bool
    # with build_context(recall=…): {"reserved_tokens", "tokens", "seqs", "facts"}: what recall placed
    recall: Optional[Dict[str, Any]] = None

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "Window":
        return _from(cls, d)


@dataclasses.dataclass
class Summary:
    id: int
    covers_through_seq: int
    content: str
    token_count: int
    model: Optional[str]
    created_at: Optional[datetime.datetime]
    conversation_id: Optional[uuid.UUID] = None
    covered_tokens: Optional[int] = None

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "Summary":
        return _from(cls, d, conversation_id=_uuid(d.get("conversation_id")), created_at=_time(d.get("created_at")))


@dataclasses.dataclass
class Job:
    """A background job's state (`summary_status()['job']`, `reply_status`)."""
    id: int
    conversation_id: Optional[uuid.UUID]
    status: str
    attempts: int
    last_error: Optional[str]
    run_after: Optional[datetime.datetime]
    kind: Optional[str] = None
    message_id: Optional[uuid.UUID] = None
    created_at: Optional[datetime.datetime] = None
    updated_at: Optional[datetime.datetime] = None

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "Job":
        return _from(cls, d, conversation_id=_uuid(d.get("conversation_id")), message_id=_uuid(d.get("message_id")),
                     run_after=_time(d.get("run_after")), created_at=_time(d.get("created_at")),
                     updated_at=_time(d.get("updated_at")))


@dataclasses.dataclass
class SummaryStatus:
    summary: Optional[Summary]
    job: Optional[Job]
    uncovered_tokens: int
    threshold: int
    raw: Dict[str, Any]

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "SummaryStatus":
        return cls(Summary.parse(d["summary"]) if d.get("summary") else None,
                   Job.parse(d["job"]) if d.get("job") else None,
                   d.get("uncovered_tokens", 0), d.get("threshold", 0), d)


@dataclasses.dataclass
class Agent:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    system_prompt: Optional[str]
    model: Optional[str]
    tools: List[Dict[str, Any]]
    max_context_tokens: int
    reply_max_tokens: int
    temperature: float
    summarize_threshold: Optional[int]
    auto_reply: bool
    metadata: Dict[str, Any]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    # None or 0: memory.retention_days; n: deleted n days after the last update (or sooner, when
    # the operator's period is shorter)
    retention_days: Optional[int] = None
    # whether members of its conversations may read (and their turns use) the prompt and tools
    share_config: bool = False

    @classmethod
    def parse(cls, d: Dict[str, Any]) -> "Agent":
        return _from(cls, d)


@dataclasses.dataclass
class ChatResult:
    """A chat turn: the stored assistant message, the provider's usage and the window sent."""
    message: Message
    usage: Dict[str, Any]
    context: Dict[str, Any]
    finish_reason: Optional[str]
    model: Optional[str]
    agent_id: Optional[uuid.UUID]

    @classmethod
    def parse(cls, d: Dict[str, Any], conversation_id: Any = None) -> "ChatResult":
        return cls(Message.parse(d["message"], conversation_id), d.get("usage") or {}, d.get("context") or {},
                   d.get("finish_reason"), d.get("model"), _uuid(d.get("agent_id")))
