"""The SQL of every operation, as data: each function returns a `Call` (statement, parameters and
how to read the rows) and does no I/O, so the sync and async clients share one definition of
the API. Values are always bound parameters; only the fixed function and argument names below
are composed into the statement (quoted by psycopg)."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from psycopg import sql
from psycopg.types.json import Jsonb

from .errors import ConflictError, NotFoundError
from .models import Agent, ChatResult, Conversation, Job, Message, MessagePage, Summary, SummaryStatus, Window

Rows = List[Dict[str, Any]]
IdLike = Any  # uuid.UUID or its text form


@dataclasses.dataclass
class Call:
    query: sql.Composable
    params: Mapping[str, Any]
    decode: Callable[[Rows], Any]
    # statements run first, in the same transaction (their rows are not read)
    before: List[Tuple[sql.Composable, Mapping[str, Any]]] = dataclasses.field(default_factory=list)

    def steps(self) -> List[Tuple[sql.Composable, Mapping[str, Any]]]:
        return self.before + [(self.query, self.params)]


def as_uuid(value: IdLike, what: str = "id") -> Optional[uuid.UUID]:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        from .errors import InvalidInputError
        raise InvalidInputError(f"{what} is not a UUID: {str(value)[:80]!r}", "22P02") from None


def _param(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, (dict, list)) else value


# Python ints and floats arrive as int2/int4/int8 and float8, which PostgreSQL does not cast
# implicitly to the functions' integer and real parameters: name the types.
ARG_TYPES = {"max_tokens": "integer", "limit": "integer", "before_seq": "bigint", "job_id": "bigint",
             "at_seq": "bigint", "to_seq": "bigint",
             "max_context_tokens": "integer", "reply_max_tokens": "integer", "summarize_threshold": "integer",
             "temperature": "real"}


def _function(name: str, args: Mapping[str, Any], shape: str) -> sql.Composed:
    """`SELECT memory.name(arg => %(arg)s, …)` with the arguments that are not None (so the
    function's own defaults apply to the rest; a required argument is marked by `_Null`).
    shape: 'value' | 'row' (a composite result)."""
    def arg(k: str) -> sql.Composable:
        cast = sql.SQL("::" + ARG_TYPES[k]) if k in ARG_TYPES else sql.SQL("")
        return sql.SQL("{} => {}{}").format(sql.Identifier(k), sql.Placeholder(k), cast)
    named = sql.SQL(", ").join(arg(k) for k, v in args.items() if v is not None)
    fn = sql.SQL("memory.{}({})").format(sql.Identifier(name), named)
    if shape == "row":
        return sql.SQL("SELECT * FROM {}").format(fn)
    return sql.SQL("SELECT {} AS value").format(fn)


def _params(args: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: None if v is _NULL else _param(v) for k, v in args.items() if v is not None}


ALWAYS_REQUIRED = frozenset(("conversation_id", "role", "content", "messages", "job_id", "id"))
_NULL = object()  # an explicit SQL NULL (the function reports it) rather than "use the default"


def _value(rows: Rows) -> Any:
    return rows[0]["value"]


def _one(parse: Callable[[Dict[str, Any]], Any], what: str) -> Callable[[Rows], Any]:
    def decode(rows: Rows) -> Any:
        if not rows or rows[0].get("id") is None:
            raise NotFoundError(f"{what} does not exist", "P0002")
        return parse(rows[0])
    return decode


def function(fn: str, decode: Callable[[Rows], Any] = _value, shape: str = "value", required: Sequence[str] = (),
             /, **args: Any) -> Call:
    """A call of `memory.<fn>` with named arguments. None means the function's default, except
    for the `required` arguments, which are passed as NULL (the function then says what is
    missing: 22004)."""
    required = ALWAYS_REQUIRED.union(required)
    args = {k: _NULL if v is None and k in required else v for k, v in args.items()}
    return Call(_function(fn, args, shape), _params(args), decode)


def statement(query: str, decode: Callable[[Rows], Any], **params: Any) -> Call:
    return Call(sql.SQL(query), {k: _param(v) for k, v in params.items()}, decode)  # type: ignore[arg-type]


# ---- identity and tokens ----------------------------------------------------------------------

def current_user_id() -> Call:
    """The caller's uuid as memory_ext sees it (None: no identity)."""
    return function("current_user_id")


def estimate_tokens(content: str, encoding: Optional[str] = None) -> Call:
    """Exact tokens of a text in an encoding or model name (default cl100k_base)."""
    return function("estimate_tokens", content=content, encoding=encoding)


def count_message_tokens(messages: Sequence[Mapping[str, Any]], encoding: Optional[str] = None) -> Call:
    """Tokens of a whole OpenAI messages array, reply priming included."""
    return function("count_message_tokens", messages=list(messages), encoding=encoding)


# ---- conversations ----------------------------------------------------------------------------

def create_conversation(agent_id: Optional[IdLike], title: Optional[str] = None,
                        metadata: Optional[Mapping[str, Any]] = None, encoding: Optional[str] = None,
                        template_id: Optional[IdLike] = None) -> Call:
    """A new conversation of the caller (starting with a template's messages when template_id is
    given; agent_id may then be None: the template's agent)."""
    return function("create_conversation", _one(Conversation.parse, "conversation"), "row", ("agent_id",),
                    agent_id=as_uuid(agent_id, "agent_id"), title=title,
                    metadata=dict(metadata) if metadata is not None else None, encoding=encoding,
                    template_id=as_uuid(template_id, "template_id"))


def ensure_conversation(conversation_id: IdLike, agent_id: IdLike, title: Optional[str] = None,
                        metadata: Optional[Mapping[str, Any]] = None) -> Call:
    """The conversation with this id, created for the caller if it does not exist yet. An id that
    belongs to someone else raises ConflictError (their conversation stays invisible).
    Two statements: when a concurrent transaction creates the same id, the INSERT waits for it
    and does nothing, and only a new statement's snapshot sees the row it committed."""
    cid = as_uuid(conversation_id, "conversation_id")

    def decode(rows: Rows) -> Conversation:
        if not rows:
            raise ConflictError(f"conversation {cid} belongs to another user", "23505",
                                "Use another session id or key.")
        return Conversation.parse(rows[0])
    insert = statement(
        """INSERT INTO memory.conversations (id, agent_id, title, metadata)
           VALUES (%(id)s, %(agent_id)s, %(title)s, coalesce(%(metadata)s, '{}'::jsonb))
           ON CONFLICT (id) DO NOTHING""",
        decode, id=cid, agent_id=as_uuid(agent_id, "agent_id"), title=title,
        metadata=dict(metadata) if metadata is not None else None)
    read = get_conversation(cid)
    return Call(read.query, read.params, decode, [(insert.query, insert.params)])


def get_conversation(conversation_id: IdLike) -> Call:
    """One conversation (NotFoundError when it does not exist or is not readable)."""
    return statement("SELECT * FROM memory.conversations WHERE id = %(id)s",
                     _one(Conversation.parse, "conversation"), id=as_uuid(conversation_id, "conversation_id"))


def list_conversations(agent_id: Optional[IdLike] = None, limit: Optional[int] = None,
                       metadata: Optional[Mapping[str, Any]] = None, title: Optional[str] = None,
                       updated_before: Any = None, updated_after: Any = None, before_id: Optional[IdLike] = None,
                       archived: Optional[bool] = False, shared: Optional[bool] = None) -> Call:
    """The caller's conversations and those shared with it (Conversation.access: owner, editor or
    viewer), most recently updated first, filtered by agent, metadata containment, a title
    substring, update time, archived (False: hide archived, True: only archived, None: both) and
    shared (False: own only, True: shared only, None: both). Next page:
    updated_before=last.updated_at, before_id=last.id."""
    return function("list_conversations", lambda rows: [Conversation.parse(r) for r in rows], "row", ("archived",),
                    agent_id=as_uuid(agent_id, "agent_id"), limit=limit,
                    metadata=dict(metadata) if metadata is not None else None, title=title,
                    updated_before=updated_before, updated_after=updated_after,
                    before_id=as_uuid(before_id, "before_id"), archived=archived, shared=shared)


def find_conversations(metadata: Mapping[str, Any], agent_id: Optional[IdLike] = None) -> Call:
    """The caller's readable conversations whose metadata contains `metadata`, newest first."""
    return statement(
        """SELECT * FROM memory.conversations
            WHERE metadata @> %(metadata)s AND (%(agent_id)s::uuid IS NULL OR agent_id = %(agent_id)s)
            ORDER BY updated_at DESC, id""",
        lambda rows: [Conversation.parse(r) for r in rows], metadata=dict(metadata), agent_id=as_uuid(agent_id, "agent_id"))


def delete_conversation(conversation_id: IdLike) -> Call:
    """Deletes a conversation with its messages, summaries and jobs; True if it was there."""
    return function("delete_conversation", id=as_uuid(conversation_id, "conversation_id"))


# ---- messages ---------------------------------------------------------------------------------

def add_message(conversation_id: IdLike, role: str, content: str, tool_calls: Optional[List[Dict[str, Any]]] = None,
                name: Optional[str] = None, tool_call_id: Optional[str] = None,
                metadata: Optional[Mapping[str, Any]] = None, idempotency_key: Optional[str] = None) -> Call:
    """Appends one message (validated, counted, seq assigned) and returns it."""
    return function("add_message", _one(Message.parse, "message"), "row",
                    conversation_id=as_uuid(conversation_id, "conversation_id"), role=role, content=content,
                    tool_calls=tool_calls, name=name, tool_call_id=tool_call_id,
                    metadata=dict(metadata) if metadata is not None else None, idempotency_key=idempotency_key)


MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "metadata", "idempotency_key")
# the stored columns a Message has (not the search index)
MESSAGE_COLUMNS = ("id, conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count, metadata, "
                   "created_at, idempotency_key")


def add_messages(conversation_id: IdLike, messages: Sequence[Mapping[str, Any]]) -> Call:
    """Appends several messages in order with one statement (the same triggers and checks as
    add_message); returns them in seq order. Each item takes the keys of MESSAGE_FIELDS."""
    items = []
    for i, m in enumerate(messages):
        unknown = set(m) - set(MESSAGE_FIELDS)
        if unknown:
            from .errors import InvalidInputError
            raise InvalidInputError(f"message {i}: unknown keys {sorted(unknown)}", "22023")
        items.append({k: m.get(k) for k in MESSAGE_FIELDS})
    return statement(
        """INSERT INTO memory.conversation_messages
                  (conversation_id, role, content, name, tool_calls, tool_call_id, metadata, idempotency_key)
           SELECT %(conversation_id)s, m.role, m.content, m.name, m.tool_calls, m.tool_call_id,
                  coalesce(m.metadata, '{}'::jsonb), m.idempotency_key
             FROM ROWS FROM (jsonb_to_recordset(%(messages)s)
                      AS (role text, content text, name text, tool_calls jsonb, tool_call_id text, metadata jsonb,
                          idempotency_key text)) WITH ORDINALITY
                  AS m(role, content, name, tool_calls, tool_call_id, metadata, idempotency_key, n)
            ORDER BY m.n
           RETURNING """ + MESSAGE_COLUMNS,
        lambda rows: sorted((Message.parse(r) for r in rows), key=lambda m: m.seq),
        conversation_id=as_uuid(conversation_id, "conversation_id"), messages=items)


def get_messages(conversation_id: IdLike, limit: Optional[int] = None, before_seq: Optional[int] = None) -> Call:
    """One page of messages (oldest to newest), ending before `before_seq` (default: the newest)."""
    cid = as_uuid(conversation_id, "conversation_id")
    return function("get_messages", lambda rows: MessagePage.parse(rows[0]["value"], cid),
                    conversation_id=cid, limit=limit, before_seq=before_seq)


def all_messages(conversation_id: IdLike) -> Call:
    """Every message of a readable conversation, in seq order (empty if none or not readable)."""
    return statement(f"SELECT {MESSAGE_COLUMNS} FROM memory.conversation_messages WHERE conversation_id = %(id)s ORDER BY seq",
                     lambda rows: [Message.parse(r) for r in rows], id=as_uuid(conversation_id, "conversation_id"))


def delete_message(message_id: IdLike) -> Call:
    """Deletes one message (an assistant message takes its tool results with it); True if deleted."""
    return statement("DELETE FROM memory.conversation_messages WHERE id = %(id)s RETURNING id",
                     lambda rows: bool(rows), id=as_uuid(message_id, "message_id"))


def delete_nth_message(conversation_id: IdLike, index: int) -> Call:
    """Deletes the message at a 0-based position in seq order (-1: the newest) and returns it, or
    None when there is no such message."""
    order, offset = ("DESC", -index - 1) if index < 0 else ("ASC", index)
    return statement(
        f"""DELETE FROM memory.conversation_messages
             WHERE id = (SELECT id FROM memory.conversation_messages WHERE conversation_id = %(id)s
                          ORDER BY seq {order} OFFSET %(offset)s LIMIT 1)
            RETURNING {MESSAGE_COLUMNS}""",
        lambda rows: Message.parse(rows[0]) if rows else None,
        id=as_uuid(conversation_id, "conversation_id"), offset=offset)


def search_messages(query: str, conversation_id: Optional[IdLike] = None, agent_id: Optional[IdLike] = None,
                    role: Optional[str] = None, since: Any = None, until: Any = None, tool: Optional[str] = None,
                    has_tool_calls: Optional[bool] = None, limit: Optional[int] = None, cursor: Optional[str] = None,
                    mode: Optional[str] = None) -> Call:
    """Search over the caller's readable conversations: {"results": [...], "next_cursor", "mode"}.
    mode: "text" (the default), "semantic" or "hybrid" (with memory.embedding_model set)."""
    return function("search_messages", _value, "value", ("query",), query=query,
                    conversation_id=as_uuid(conversation_id, "conversation_id"), agent_id=as_uuid(agent_id, "agent_id"),
                    role=role, since=since, until=until, tool=tool, has_tool_calls=has_tool_calls, limit=limit,
                    cursor=cursor, mode=mode)


# ---- the window and summaries -----------------------------------------------------------------

def build_context(conversation_id: IdLike, max_tokens: Optional[int] = None, system_prompt: Optional[str] = None,
                  recall: Optional[float] = None) -> Call:
    """The token window: what fits `max_tokens` (default: the agent's budget or 8000), newest first,
    tool groups whole, with the newest summary when history is left out; `recall` (0 to 0.5) reserves
    that share of the budget for older messages relevant to the newest user message."""
    return function("build_context", lambda rows: Window.parse(rows[0]["value"]),
                    conversation_id=as_uuid(conversation_id, "conversation_id"), max_tokens=max_tokens,
                    system_prompt=system_prompt, recall=recall)


def build_context_from(messages: Sequence[Mapping[str, Any]], max_tokens: Optional[int] = None,
                       system_prompt: Optional[str] = None, encoding: Optional[str] = None) -> Call:
    """The same window over a given OpenAI messages array."""
    return function("build_context_from", lambda rows: Window.parse(rows[0]["value"]), messages=list(messages),
                    max_tokens=max_tokens, system_prompt=system_prompt, encoding=encoding)


def should_summarize(conversation_id: IdLike) -> Call:
    return function("should_summarize", conversation_id=as_uuid(conversation_id, "conversation_id"))


def request_summary(conversation_id: IdLike) -> Call:
    """Queues a summary job (idempotent); returns the job id."""
    return function("request_summary", conversation_id=as_uuid(conversation_id, "conversation_id"))


def summary_status(conversation_id: IdLike) -> Call:
    return function("summary_status", lambda rows: SummaryStatus.parse(rows[0]["value"]),
                    conversation_id=as_uuid(conversation_id, "conversation_id"))


def list_summaries(conversation_id: IdLike) -> Call:
    """The conversation's summaries, newest first."""
    return statement("""SELECT * FROM memory.conversation_summaries WHERE conversation_id = %(id)s
                         ORDER BY covers_through_seq DESC, id DESC""",
                     lambda rows: [Summary.parse(r) for r in rows], id=as_uuid(conversation_id, "conversation_id"))


def add_summary(conversation_id: IdLike, covers_through_seq: int, content: str, model: Optional[str] = None) -> Call:
    """Stores a summary written by the application (covering messages 1..covers_through_seq;
    `model` defaults to 'application')."""
    return statement("""INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
                        VALUES (%(id)s, %(covers_through_seq)s, %(content)s, coalesce(%(model)s, 'application'))
                        RETURNING *""",
                     lambda rows: Summary.parse(rows[0]), id=as_uuid(conversation_id, "conversation_id"),
                     covers_through_seq=covers_through_seq, content=content, model=model)


# ---- export, import, fork, rewind --------------------------------------------------------------

def export_conversation(conversation_id: IdLike, format: Optional[str] = None) -> Call:
    """'json' (default: lossless and versioned, what import_conversation reads), 'openai'
    ({"messages": [...]}) or 'markdown' (returned as text)."""
    def decode(rows: Rows) -> Any:
        value = rows[0]["value"]
        return value if format != "markdown" else str(value)
    return function("export_conversation", decode, "value", ("format",), id=as_uuid(conversation_id, "conversation_id"),
                    format=format or "json")


def import_conversation(data: Any, agent_id: Optional[IdLike] = None, title: Optional[str] = None) -> Call:
    """A new conversation of the caller from an export (json), {"messages": [...]} or an OpenAI
    messages array; all or nothing. Returns its id."""
    return function("import_conversation", lambda rows: as_uuid(rows[0]["value"]), "value", ("data",), data=data,
                    agent_id=as_uuid(agent_id, "agent_id"), title=title)


def fork_conversation(conversation_id: IdLike, at_seq: Optional[int] = None, title: Optional[str] = None) -> Call:
    """A new conversation of the caller with messages 1..at_seq (default: all). Returns its id."""
    return function("fork_conversation", lambda rows: as_uuid(rows[0]["value"]), "value", (),
                    id=as_uuid(conversation_id, "conversation_id"), at_seq=at_seq, title=title)


def rewind_conversation(conversation_id: IdLike, to_seq: int) -> Call:
    """Removes the messages after to_seq (and the summaries and pending jobs over them); returns
    how many messages went."""
    return function("rewind_conversation", _value, "value", ("to_seq",), id=as_uuid(conversation_id, "conversation_id"),
                    to_seq=to_seq)


def save_as_template(conversation_id: IdLike, name: str) -> Call:
    """Saves a conversation's messages and agent as the caller's template `name`; returns its id."""
    return function("save_as_template", lambda rows: as_uuid(rows[0]["value"]), "value", ("name",),
                    conversation_id=as_uuid(conversation_id, "conversation_id"), name=name)


def list_templates() -> Call:
    """The caller's templates (dicts: id, name, agent_id, messages, metadata, created_at)."""
    return function("list_templates", lambda rows: rows, "row")


def delete_template(template_id: IdLike) -> Call:
    return function("delete_template", _value, "value", ("template_id",), template_id=as_uuid(template_id, "template_id"))


# ---- branches ----------------------------------------------------------------------------------

def edit_message(message_id: IdLike, content: str) -> Call:
    """A new version of a user message or plain answer; it and what followed become an inactive
    branch. Returns the new message."""
    return function("edit_message", _one(Message.parse, "message"), "row", ("message_id", "content"),
                    message_id=as_uuid(message_id, "message_id"), content=content)


def list_branches(conversation_id: IdLike) -> Call:
    """The conversation's branches (dicts: leaf_id, leaf_seq, active, messages, parts_after_seq, first,
    created_at), the active one first."""
    return function("list_branches", conversation_id=as_uuid(conversation_id, "conversation_id"))


def message_siblings(message_id: IdLike) -> Call:
    """The versions at one message's place (dicts: id, role, content, active, leaf_id, created_at),
    the active one first."""
    return function("message_siblings", _value, "value", ("message_id",), message_id=as_uuid(message_id, "message_id"))


def switch_branch(conversation_id: IdLike, message_id: IdLike) -> Call:
    """Makes the path ending at message_id the active branch; {"active_leaf", "stored", "restored"}."""
    return function("switch_branch", _value, "value", ("message_id",),
                    conversation_id=as_uuid(conversation_id, "conversation_id"),
                    message_id=as_uuid(message_id, "message_id"))


# ---- facts (long-term memory) -----------------------------------------------------------------

def list_facts(agent_id: Optional[IdLike] = None, include_superseded: Optional[bool] = None) -> Call:
    """The caller's facts (dicts: id, agent_id, conversation_id, source_message_ids, content,
    superseded_by, superseded_at, embedded, created_at, updated_at), oldest first."""
    return function("list_facts", agent_id=as_uuid(agent_id, "agent_id"), include_superseded=include_superseded)


def add_fact(content: str, agent_id: Optional[IdLike] = None) -> Call:
    """Adds a fact of the caller's (for one of its agents only, with agent_id); returns it."""
    return function("add_fact", _value, "value", ("content",), content=content, agent_id=as_uuid(agent_id, "agent_id"))


def edit_fact(fact_id: IdLike, content: str) -> Call:
    """Changes a fact's text (the worker embeds it anew); returns it."""
    return function("edit_fact", _value, "value", ("fact_id", "content"), fact_id=as_uuid(fact_id, "fact_id"),
                    content=content)


def delete_fact(fact_id: IdLike) -> Call:
    """Deletes one of the caller's facts; whether one was deleted."""
    return function("delete_fact", _value, "value", ("fact_id",), fact_id=as_uuid(fact_id, "fact_id"))


# ---- sharing, share links, archive, erasure ---------------------------------------------------

def share_conversation(conversation_id: IdLike, user_id: IdLike, role: str = "viewer") -> Call:
    """Makes user_id a 'viewer' (reads) or 'editor' (also appends) of the caller's conversation;
    sharing again changes the role. Returns the membership (conversation_id, user_id, role, ...)."""
    return function("share_conversation", lambda rows: rows[0], "row", ("user_id",),
                    conversation_id=as_uuid(conversation_id, "conversation_id"), user_id=as_uuid(user_id, "user_id"),
                    role=role)


def unshare_conversation(conversation_id: IdLike, user_id: IdLike) -> Call:
    """Removes a member (the owner removes anyone, a member itself); whether there was one."""
    return function("unshare_conversation", _value, "value", ("user_id",),
                    conversation_id=as_uuid(conversation_id, "conversation_id"), user_id=as_uuid(user_id, "user_id"))


def transfer_conversation(conversation_id: IdLike, user_id: IdLike) -> Call:
    """Offers the caller's conversation to user_id (the owner's alone); nothing changes until
    user_id accepts it with accept_transfer. Returns the conversation (still the caller's)."""
    return function("transfer_conversation", _one(Conversation.parse, "conversation"), "row", ("user_id",),
                    conversation_id=as_uuid(conversation_id, "conversation_id"), user_id=as_uuid(user_id, "user_id"))


def list_transfer_offers() -> Call:
    """Transfer offers the caller made or received: dicts of conversation_id, from_user_id,
    to_user_id, title, message_count, total_tokens, members, created_at."""
    return function("list_transfer_offers", lambda rows: rows, "row")


def accept_transfer(conversation_id: IdLike) -> Call:
    """Takes a conversation offered to the caller; the previous owner stays as an editor. Returns
    the conversation, now the caller's."""
    return function("accept_transfer", _one(Conversation.parse, "conversation"), "row", (),
                    conversation_id=as_uuid(conversation_id, "conversation_id"))


def decline_transfer(conversation_id: IdLike) -> Call:
    """Ends an offer: its recipient declines it, or its sender withdraws it; whether there was one."""
    return function("decline_transfer", _value, "value", (), conversation_id=as_uuid(conversation_id, "conversation_id"))


def list_share_offers() -> Call:
    """Shares waiting for the caller's consent, per sharer: dicts of from_user_id, offers, oldest, newest."""
    return function("list_share_offers", lambda rows: rows, "row")


def accept_shares(from_user_id: Optional[IdLike] = None, conversation_id: Optional[IdLike] = None) -> Call:
    """Accepts the caller's pending shares from one user, or of one conversation; how many took effect."""
    return function("accept_shares", _value, "value", (),
                    from_user_id=as_uuid(from_user_id, "from_user_id"),
                    conversation_id=as_uuid(conversation_id, "conversation_id"))


def decline_shares(from_user_id: IdLike) -> Call:
    """Ends every share from one user to the caller, accepted or pending; how many ended."""
    return function("decline_shares", _value, "value", (), from_user_id=as_uuid(from_user_id, "from_user_id"))


def list_members(conversation_id: IdLike) -> Call:
    """The owner (role 'owner') and the members: dicts of user_id, role, created_at."""
    return function("list_members", lambda rows: rows, "row", (), conversation_id=as_uuid(conversation_id, "conversation_id"))


def archive_conversation(conversation_id: IdLike) -> Call:
    """Hides the conversation from list_conversations and refuses new messages (ArchivedError)."""
    return function("archive_conversation", _one(Conversation.parse, "conversation"), "row", (),
                    id=as_uuid(conversation_id, "conversation_id"))


def unarchive_conversation(conversation_id: IdLike) -> Call:
    return function("unarchive_conversation", _one(Conversation.parse, "conversation"), "row", (),
                    id=as_uuid(conversation_id, "conversation_id"))


def create_share_link(conversation_id: IdLike, expires_at: Any = None, up_to_seq: Optional[int] = None) -> Call:
    """A token that shows the conversation up to up_to_seq (default: now) to whoever holds it,
    until expires_at (default: until revoked). The token is returned once and never stored."""
    return function("create_share_link", _value, "value", (), conversation_id=as_uuid(conversation_id, "conversation_id"),
                    expires_at=expires_at, up_to_seq=up_to_seq)


def get_shared_conversation(token: str) -> Call:
    """The json export behind a share link (NotFoundError for a wrong, expired or revoked token)."""
    return function("get_shared_conversation", _value, "value", ("token",), token=token)


def list_share_links(conversation_id: IdLike) -> Call:
    """The conversation's links: dicts of id, up_to_seq, expires_at, revoked_at, created_at."""
    return function("list_share_links", lambda rows: rows, "row", (), conversation_id=as_uuid(conversation_id, "conversation_id"))


def revoke_share_link(link_id: IdLike) -> Call:
    """Revokes a link at once (a revoked one is deleted); whether the caller owned such a link."""
    return function("revoke_share_link", _value, "value", (), id=as_uuid(link_id, "link_id"))


def erase_user(user_id: IdLike) -> Call:
    """Removes everything of one user (superusers and BYPASSRLS roles only): rows per table."""
    return function("erase_user", _value, "value", ("user_id",), user_id=as_uuid(user_id, "user_id"))


# ---- agents and chat turns ----------------------------------------------------------------------

AGENT_SETTINGS = ("system_prompt", "model", "tools", "max_context_tokens", "reply_max_tokens", "temperature",
                  "summarize_threshold", "auto_reply", "metadata", "retention_days")


def _agent_settings(settings: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = set(settings) - set(AGENT_SETTINGS)
    if unknown:
        from .errors import InvalidInputError
        raise InvalidInputError(f"unknown agent settings {sorted(unknown)}", "22023")
    return dict(settings)


def create_agent(name: str, **settings: Any) -> Call:
    """A new agent of the caller; settings as in AGENT_SETTINGS (omitted: the defaults)."""
    return function("create_agent", _one(Agent.parse, "agent"), "row", ("name",), name=name, **_agent_settings(settings))


def update_agent(agent_id: IdLike, name: Optional[str] = None, **settings: Any) -> Call:
    """Changes the given settings of an agent; None leaves a setting as it is."""
    return function("update_agent", _one(Agent.parse, "agent"), "row", ("agent_id",), agent_id=as_uuid(agent_id, "agent_id"),
                    name=name, **_agent_settings(settings))


def get_agent(agent_id: IdLike) -> Call:
    return function("get_agent", _one(Agent.parse, "agent"), "row", ("agent_id",), agent_id=as_uuid(agent_id, "agent_id"))


def list_agents() -> Call:
    """The caller's own agents, oldest first."""
    return statement("SELECT * FROM memory.list_agents()", lambda rows: [Agent.parse(r) for r in rows])


def delete_agent(agent_id: IdLike) -> Call:
    return function("delete_agent", _value, "value", ("agent_id",), agent_id=as_uuid(agent_id, "agent_id"))


def chat(conversation_id: IdLike, content: str, metadata: Optional[Mapping[str, Any]] = None) -> Call:
    """A whole synchronous turn: appends the user message, calls the LLM, stores its answer."""
    cid = as_uuid(conversation_id, "conversation_id")
    return function("chat", lambda rows: ChatResult.parse(rows[0]["value"], cid), conversation_id=cid, content=content,
                    metadata=dict(metadata) if metadata is not None else None)


def continue_chat(conversation_id: IdLike) -> Call:
    """Answers the conversation as it stands (after tool results were appended)."""
    cid = as_uuid(conversation_id, "conversation_id")
    return function("continue_chat", lambda rows: ChatResult.parse(rows[0]["value"], cid), conversation_id=cid)


def regenerate(conversation_id: IdLike) -> Call:
    """A new answer to the newest user message; the old one is kept as an inactive branch."""
    cid = as_uuid(conversation_id, "conversation_id")
    return function("regenerate", lambda rows: ChatResult.parse(rows[0]["value"], cid), conversation_id=cid)


def request_reply(conversation_id: IdLike) -> Call:
    """Queues a reply job for the worker; returns the job id."""
    return function("request_reply", conversation_id=as_uuid(conversation_id, "conversation_id"))


def reply_status(job_id: int) -> Call:
    return function("reply_status", lambda rows: Job.parse(rows[0]["value"]), job_id=job_id)


def llm_calls(conversation_id: Optional[IdLike] = None, limit: int = 100) -> Call:
    """The caller's LLM calls (usage rows), newest first."""
    return statement("""SELECT * FROM memory.llm_calls
                         WHERE (%(id)s::uuid IS NULL OR conversation_id = %(id)s)
                         ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
                     lambda rows: rows, id=as_uuid(conversation_id, "conversation_id"), limit=limit)


OPERATIONS = [current_user_id, estimate_tokens, count_message_tokens, create_conversation, ensure_conversation,
              get_conversation, list_conversations, find_conversations, delete_conversation, add_message,
              add_messages, get_messages, all_messages, delete_message, delete_nth_message, search_messages, build_context, build_context_from,
              should_summarize, request_summary, summary_status, list_summaries, add_summary, export_conversation,
              import_conversation, fork_conversation, rewind_conversation, save_as_template, list_templates,
              delete_template, edit_message, list_branches, message_siblings, switch_branch, list_facts, add_fact, edit_fact, delete_fact, share_conversation, unshare_conversation, transfer_conversation, list_transfer_offers,
              accept_transfer, decline_transfer, list_share_offers, accept_shares, decline_shares, list_members, archive_conversation,
              unarchive_conversation, create_share_link, get_shared_conversation, list_share_links, revoke_share_link,
              erase_user, create_agent,
              update_agent, get_agent, list_agents, delete_agent, chat, continue_chat, regenerate, request_reply, reply_status,
              llm_calls]
