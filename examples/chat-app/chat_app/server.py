"""The chat app's HTTP API. Every request is authenticated with a bearer JWT and runs its SQL the
way PostgREST does: one transaction, `SET LOCAL ROLE authenticated`, the verified claims in
`request.jwt.claims` (the memory_ext client does both, transaction-local). The app holds no
privileged connection for user requests: row-level security decides what a user sees, and
memory_ext does the memory work (the window, token counts, the LLM call, summaries).

Run: `uvicorn chat_app.server:app` with CHAT_APP_DATABASE_URL and CHAT_APP_JWT_SECRET set
(see examples/chat-app/run.sh)."""
from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import os
import uuid
from typing import Any, Dict, Literal, Optional

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import memory_ext
from memory_ext import calls
from memory_ext.errors import MemoryExError

from . import auth, pdf, tools, voice

log = logging.getLogger("chat_app")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

AGENT_NAME = "assistant"
# The summary threshold sits below the window's budget (3000 - 500 for the reply - the tools), so
# a summary is written before the window has to leave messages out.
AGENT = dict(system_prompt="You are a helpful assistant. Use the clock tool when asked for the time.",
             tools=tools.DEFINITIONS, max_context_tokens=3000, reply_max_tokens=500, summarize_threshold=1500)
MAX_TOOL_ROUNDS = 4  # model → tools → model … at most this many times per user message

# What the page shows for failures whose database text is not the user's business.
PLAIN = {429: "Too many requests: wait a moment and try again.",
         502: "The assistant could not be reached. Try again in a moment.",
         504: "The assistant took too long to answer. Try again."}

# Sent with every response: the page loads scripts, styles and data from this origin only, is never
# framed, and no response is sniffed into another type.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "media-src 'self' blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# SQLSTATE → HTTP status; anything else is a 500 without details
STATUS = {"P0002": 404, "22023": 422, "22004": 422, "22P02": 422, "22001": 422, "23502": 422, "23514": 422,
          "54000": 413, "42501": 403, "23505": 409, "55000": 409, "PT429": 429, "PT502": 502, "PT504": 504,
          "PT422": 422}


class Settings:
    def __init__(self, database_url: str, jwt_secret: str, stand_in: bool = False, pool_size: int = 8,
                 voice_settings: Optional[voice.VoiceSettings] = None):
        if len(jwt_secret) < 32:
            raise ValueError("CHAT_APP_JWT_SECRET must be at least 32 characters")
        self.database_url, self.jwt_secret, self.stand_in, self.pool_size = database_url, jwt_secret, stand_in, pool_size
        self.voice = voice_settings or voice.VoiceSettings(None, None, "whisper-large-v3", None, "alloy")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(os.environ["CHAT_APP_DATABASE_URL"], os.environ["CHAT_APP_JWT_SECRET"],
                   os.environ.get("CHAT_APP_STAND_IN", "0") == "1", int(os.environ.get("CHAT_APP_POOL_SIZE", "8")),
                   voice.VoiceSettings.from_env())


# ---- request and response bodies ----------------------------------------------------------------

class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=8000)
    conversation_id: Optional[uuid.UUID] = None


class NewConversation(BaseModel):
    title: Optional[str] = Field(default=None, max_length=200)


class Share(BaseModel):
    user: str = Field(min_length=1, max_length=100)  # a demo user's name (a real app: an email or a user id)
    role: Literal["viewer", "editor"] = "viewer"


class SharedLink(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class SpeechRequest(BaseModel):
    text: str = Field(min_length=1, max_length=voice.MAX_SPEECH_CHARS)


class Rename(BaseModel):
    title: str = Field(min_length=1, max_length=200)


def message_json(m: memory_ext.Message) -> Dict[str, Any]:
    return {"id": str(m.id), "seq": m.seq, "role": m.role, "content": m.content, "tool_calls": m.tool_calls,
            "tool_call_id": m.tool_call_id, "token_count": m.token_count,
            "created_at": m.created_at.isoformat() if m.created_at else None}


def conversation_json(c: memory_ext.Conversation) -> Dict[str, Any]:
    return {"id": str(c.id), "title": c.title, "message_count": c.message_count, "total_tokens": c.total_tokens,
            "updated_at": c.updated_at.isoformat(), "created_at": c.created_at.isoformat(), "access": c.access}


def context_json(w: memory_ext.Window) -> Dict[str, Any]:
    return {"token_count": w.token_count, "max_tokens": w.max_tokens, "summary_included": w.summary_included,
            "included_messages": w.included_messages, "omitted_messages": w.omitted_messages}


def access_of(conversation_id: uuid.UUID) -> calls.Call:
    """The caller's access to a readable conversation: owner, editor or viewer."""
    return calls.statement(
        """SELECT CASE WHEN c.user_id = memory.current_user_id() THEN 'owner'
                       ELSE (SELECT m.role FROM memory.conversation_members m
                              WHERE m.conversation_id = c.id AND m.user_id = memory.current_user_id()) END AS access
             FROM memory.conversations c WHERE c.id = %(id)s""",
        lambda rows: rows[0]["access"] if rows else None, id=conversation_id)


def _dicts(rows) -> list:
    return [dict(r) for r in rows]


# The conversation list's cursor: the last row's (updated_at, id), opaque to the client.
def encode_cursor(c: memory_ext.Conversation) -> str:
    return base64.urlsafe_b64encode(f"{c.updated_at.isoformat()}|{c.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple:
    try:
        stamp, cid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.datetime.fromisoformat(stamp), uuid.UUID(cid)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, "malformed cursor") from None


# ---- the application ----------------------------------------------------------------------------

def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or Settings.from_env()
    state: Dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        state["client"] = memory_ext.MemoryClient(settings.database_url, max_connections=settings.pool_size)
        yield
        state["client"].close()

    app = FastAPI(title="memory_ext chat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(MemoryExError)
    async def memory_error(request: Request, e: MemoryExError):
        status = STATUS.get(e.sqlstate or "", 500)
        # log the path and the SQLSTATE only: never content, tokens or the database's message
        log.warning("%s %s -> %s (SQLSTATE %s)", request.method, request.url.path, status, e.sqlstate)
        # the database's text for the caller's own mistakes; for the LLM and everything else a
        # plain sentence (an upstream error's text may name internal hosts)
        body = {"error": PLAIN.get(status, "internal error") if status >= 500 or status == 429 else str(e)}
        if e.hint and status < 500:
            body["hint"] = e.hint
        headers = {}
        if status == 429 and getattr(e, "retry_after", None):
            headers["Retry-After"] = str(int(e.retry_after + 0.999))
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(auth.Unauthorized)
    async def unauthorized(_request: Request, e: auth.Unauthorized):
        return JSONResponse({"error": str(e)}, 401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": e.detail}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError):
        # the field and the reason, never the submitted value
        errors = [{"field": ".".join(str(p) for p in err["loc"][1:]), "reason": err["msg"]} for err in e.errors()]
        return JSONResponse({"error": "invalid input", "details": errors}, 422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception):
        log.error("%s %s -> 500 (%s)", request.method, request.url.path, type(e).__name__)
        return JSONResponse({"error": "internal error"}, 500)

    def user(request: Request) -> memory_ext.MemoryClient:
        """The memory_ext client as the request's user (claims verified, role fixed)."""
        claims = auth.verify(settings.jwt_secret, request.headers.get("authorization"))
        return state["client"].as_user(claims=claims, role=auth.ROLE)

    # ---- the page ----

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(os.path.join(STATIC, "index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/config")
    def config():
        """What the page shows about the setup (the stand-in LLM is labelled as such)."""
        return {"stand_in_llm": settings.stand_in, "agent_budget": AGENT["max_context_tokens"],
                "voice_input": settings.voice.can_transcribe,
                "voice_output": "provider" if settings.voice.can_speak else "browser"}

    @app.get("/me")
    def me(request: Request, db: memory_ext.MemoryClient = Depends(user)):
        """Who is signed in: the user id the database sees, and the token's display name if any."""
        name = auth.verify(settings.jwt_secret, request.headers.get("authorization")).get("name")
        return {"user_id": str(db.current_user_id()), "name": name if isinstance(name, str) else None}

    # ---- conversations ----

    def agent_id(db: memory_ext.MemoryClient) -> uuid.UUID:
        """The user's assistant agent, created on first use."""
        found = db.run(calls.statement(
            "SELECT id FROM memory.agents WHERE user_id = memory.current_user_id() AND name = %(name)s "
            "ORDER BY created_at LIMIT 1", lambda rows: rows[0]["id"] if rows else None, name=AGENT_NAME))
        return found or db.create_agent(AGENT_NAME, **AGENT).id

    @app.get("/conversations")
    def list_conversations(cursor: Optional[str] = Query(None, max_length=200), limit: int = Query(20, ge=1, le=100),
                           db: memory_ext.MemoryClient = Depends(user)):
        before = decode_cursor(cursor) if cursor else (None, None)
        rows = db.list_conversations(limit=limit, updated_before=before[0], before_id=before[1])
        return {"conversations": [conversation_json(c) for c in rows],
                "next_cursor": encode_cursor(rows[-1]) if len(rows) == limit else None}

    @app.post("/conversations", status_code=201)
    def create_conversation(body: NewConversation, db: memory_ext.MemoryClient = Depends(user)):
        with db.transaction() as tx:
            return conversation_json(tx.create_conversation(agent_id(tx), title=body.title))

    @app.get("/conversations/{conversation_id}/messages")
    def messages(conversation_id: uuid.UUID, before: Optional[int] = Query(None, ge=1),
                 limit: int = Query(30, ge=1, le=100), db: memory_ext.MemoryClient = Depends(user)):
        conversation, access, page = db.run(calls.get_conversation(conversation_id), access_of(conversation_id),
                                            calls.get_messages(conversation_id, limit, before))
        return {"conversation": conversation_json(conversation) | {"access": access},
                "messages": [message_json(m) for m in page.messages],
                "has_more": page.has_more, "next_before": page.next_before_seq}

    @app.get("/conversations/{conversation_id}/context")
    def context(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        """The token meter: the window the next turn sends, against the agent's budget."""
        return context_json(db.build_context(conversation_id))

    @app.patch("/conversations/{conversation_id}")
    def rename(conversation_id: uuid.UUID, body: Rename, db: memory_ext.MemoryClient = Depends(user)):
        title = body.title.strip()
        if not title:
            raise HTTPException(422, "the title is empty")
        found = db.run(calls.statement(
            "UPDATE memory.conversations SET title = %(title)s WHERE id = %(id)s RETURNING id",
            lambda rows: bool(rows), title=title, id=conversation_id))
        if not found:  # RLS: another user's conversation is not there
            raise HTTPException(404, "no such conversation")
        return conversation_json(db.get_conversation(conversation_id))

    @app.get("/conversations/{conversation_id}/summary")
    def summary(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        """The newest summary and the state of the newest summary job (its error text stays in the
        database: it may name the provider's internal address)."""
        status = db.summary_status(conversation_id)
        s, job = status.summary, status.job
        return {"summary": {"content": s.content, "covers_through_seq": s.covers_through_seq, "token_count": s.token_count,
                            "created_at": s.created_at.isoformat() if s.created_at else None} if s else None,
                "job": {"status": job.status, "attempts": job.attempts} if job else None}

    @app.delete("/conversations/{conversation_id}", status_code=204)
    def delete(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        if not db.delete_conversation(conversation_id):
            raise HTTPException(404, "no such conversation")

    @app.post("/conversations/{conversation_id}/summarize", status_code=202)
    def summarize(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        """Queues a summary job; the worker writes it (the page's summary indicator shows it)."""
        return {"job_id": db.request_summary(conversation_id)}

    @app.get("/conversations/{conversation_id}/export")
    def export(conversation_id: uuid.UUID, format: Literal["markdown", "json", "openai", "pdf"] = "markdown",
               db: memory_ext.MemoryClient = Depends(user)):
        data = db.export_conversation(conversation_id, "json" if format == "pdf" else format)
        name = f"conversation-{conversation_id}.{ {'markdown': 'md', 'pdf': 'pdf'}.get(format, 'json') }"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "pdf":
            return Response(pdf.conversation_pdf(data), media_type="application/pdf", headers=disposition)
        if format == "markdown":
            return PlainTextResponse(data, media_type="text/markdown; charset=utf-8", headers=disposition)
        return JSONResponse(data, headers=disposition)

    @app.get("/usage")
    def usage(days: int = Query(30, ge=1, le=366), db: memory_ext.MemoryClient = Depends(user)):
        """The usage dashboard: the user's own figures from the analytics views (RLS applies)."""
        daily, tools_used, agents = db.run(
            calls.statement("""SELECT day, sum(messages)::bigint AS messages, sum(stored_tokens)::bigint AS stored_tokens,
                                      sum(llm_calls)::bigint AS llm_calls, sum(prompt_tokens)::bigint AS prompt_tokens,
                                      sum(completion_tokens)::bigint AS completion_tokens, sum(cost_usd) AS cost_usd
                                 FROM memory.usage_daily
                                WHERE user_id = memory.current_user_id()
                                  AND day > (now() AT TIME ZONE 'UTC')::date - %(days)s
                                GROUP BY day ORDER BY day""", _dicts, days=days),
            calls.statement("SELECT tool, calls, results, without_result, last_used FROM memory.tool_usage ORDER BY calls DESC, tool",
                            _dicts),
            calls.statement("""SELECT p.agent_id, a.name, p.llm_calls, p.failures, p.latency_p50_ms, p.latency_p95_ms,
                                      p.tokens_per_reply, p.cost_usd
                                 FROM memory.agent_performance p LEFT JOIN memory.agents a ON a.id = p.agent_id
                                WHERE p.user_id = memory.current_user_id() ORDER BY p.llm_calls DESC""", _dicts))
        return jsonable_encoder({"days": daily, "tools": tools_used, "agents": agents})

    # ---- sharing: members, offers, read-only links ----

    @app.get("/conversations/{conversation_id}/members")
    def members(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        return jsonable_encoder({"members": [dict(m) for m in db.list_members(conversation_id)]})

    @app.post("/conversations/{conversation_id}/members", status_code=201)
    def share(conversation_id: uuid.UUID, body: Share, db: memory_ext.MemoryClient = Depends(user)):
        """Shares with a user as viewer or editor: an offer the user accepts (memory_ext never puts
        a conversation in someone's list without their consent)."""
        return jsonable_encoder(dict(db.share_conversation(conversation_id, auth.demo_user_id(body.user.strip()), body.role)))

    @app.delete("/conversations/{conversation_id}/members/{member_id}", status_code=204)
    def unshare(conversation_id: uuid.UUID, member_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        if not db.unshare_conversation(conversation_id, member_id):
            raise HTTPException(404, "no such member")

    @app.get("/shares")
    def share_offers(db: memory_ext.MemoryClient = Depends(user)):
        """Conversations other users offered the caller, per sharer."""
        return jsonable_encoder({"offers": [dict(o) for o in db.list_share_offers()]})

    @app.post("/shares/{from_user_id}/accept")
    def accept(from_user_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        return {"accepted": db.accept_shares(from_user_id=from_user_id)}

    @app.post("/shares/{from_user_id}/decline")
    def decline(from_user_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        return {"declined": db.decline_shares(from_user_id)}

    @app.get("/conversations/{conversation_id}/links")
    def links(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        return jsonable_encoder({"links": [dict(link) for link in db.list_share_links(conversation_id)]})

    @app.post("/conversations/{conversation_id}/links", status_code=201)
    def create_link(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        """A read-only link to the conversation as it is now. The token is shown once (memory_ext
        stores only its hash); the page puts it in the address's fragment, which no server logs."""
        return {"token": db.create_share_link(conversation_id)}

    @app.delete("/links/{link_id}", status_code=204)
    def revoke_link(link_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        if not db.revoke_share_link(link_id):
            raise HTTPException(404, "no such link")

    @app.post("/shared")
    def shared(body: SharedLink):
        """The public read-only view of a share link: no sign-in, the token in the body (never in a
        URL a log could keep). The title and the messages, nothing else of the export."""
        data = state["client"].get_shared_conversation(body.token)
        return {"title": data["conversation"].get("title"),
                "messages": [{k: m.get(k) for k in ("id", "seq", "role", "content", "tool_calls", "tool_call_id", "created_at")}
                             | {"token_count": m.get("token_count", 0)} for m in data["messages"]]}

    # ---- voice: the provider's audio endpoints, relayed (the key stays here) ----

    @app.post("/voice/transcribe")
    async def transcribe(request: Request, db: memory_ext.MemoryClient = Depends(user)):
        """The browser's recording (the body, as recorded) as text, for the user to read and send."""
        if not settings.voice.can_transcribe:
            raise HTTPException(501, "voice input is not configured (CHAT_APP_AUDIO_BASE_URL)")
        audio_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if audio_type not in voice.AUDIO_TYPES:
            raise HTTPException(415, "send audio/webm, audio/ogg, audio/wav, audio/mpeg or audio/mp4")
        audio = await request.body()
        if not audio:
            raise HTTPException(422, "the recording is empty")
        if len(audio) > voice.MAX_AUDIO_BYTES:
            raise HTTPException(413, "the recording is over 10 MB")
        try:
            text = await run_in_threadpool(voice.transcribe, settings.voice, audio, audio_type)
        except voice.VoiceError as e:
            log.warning("POST /voice/transcribe -> 502 (%s)", e)
            raise HTTPException(502, "The speech could not be transcribed. Try again.") from None
        return {"text": text}

    @app.post("/voice/speech")
    def speech(body: SpeechRequest, db: memory_ext.MemoryClient = Depends(user)):
        """A reply read aloud by the provider (without a speech model the page uses the browser's voice)."""
        if not settings.voice.can_speak:
            raise HTTPException(501, "speech is not configured (CHAT_APP_SPEECH_MODEL): the browser reads aloud")
        try:
            content_type, audio = voice.speak(settings.voice, body.text)
        except voice.VoiceError as e:
            log.warning("POST /voice/speech -> 502 (%s)", e)
            raise HTTPException(502, "The reply could not be read aloud. Try again.") from None
        return Response(audio, media_type=content_type)

    @app.get("/search")
    def search(q: str = Query(min_length=1, max_length=1000), cursor: Optional[str] = Query(None, max_length=200),
               db: memory_ext.MemoryClient = Depends(user)):
        return db.search_messages(q, limit=20, cursor=cursor)

    # ---- the chat turn ----

    @app.post("/agent/chat")
    def chat(body: ChatRequest, db: memory_ext.MemoryClient = Depends(user)):
        """One user message and the agent's answer, tool calls included, in one transaction: the
        user's message, the model's calls, the tools' results and the final answer are all
        stored, or (on any failure) none of them, so the client can simply retry."""
        with db.transaction() as tx:
            if body.conversation_id is None:
                conversation = tx.create_conversation(agent_id(tx), title=body.message[:80])
            else:
                conversation = tx.get_conversation(body.conversation_id)
                if not conversation.title:
                    tx.run(calls.statement("UPDATE memory.conversations SET title = %(title)s WHERE id = %(id)s RETURNING id",
                                           lambda rows: None, title=body.message[:80], id=conversation.id))
            result = tx.chat(conversation.id, body.message)
            return finish_turn(tx, conversation.id, result, result.message.seq - 1)  # from the user's message

    @app.post("/conversations/{conversation_id}/regenerate")
    def regenerate(conversation_id: uuid.UUID, db: memory_ext.MemoryClient = Depends(user)):
        """A new answer to the last user message: what followed it (the answer, its tool calls and
        results) is kept as an inactive branch and the model asked again, in one transaction (a
        failure keeps the old answer where it was)."""
        with db.transaction() as tx:
            last_user = tx.run(calls.statement(
                "SELECT max(seq) AS seq FROM memory.conversation_messages WHERE conversation_id = %(id)s AND role = 'user'",
                lambda rows: rows[0]["seq"], id=conversation_id))
            if last_user is None:
                tx.get_conversation(conversation_id)  # 404 for a conversation that is not the user's
                raise HTTPException(409, "there is no user message to answer again")
            result = tx.regenerate(conversation_id)
            return finish_turn(tx, conversation_id, result, last_user + 1)

    def finish_turn(tx, cid: uuid.UUID, result, first_seq: int) -> Dict[str, Any]:
        """Runs the model's tool calls and asks it again until it answers (at most MAX_TOOL_ROUNDS
        times); the turn's messages from first_seq on, its usage and the new window."""
        usage = dict(result.usage)
        for _ in range(MAX_TOOL_ROUNDS):
            if not result.message.tool_calls:
                break
            for call in result.message.tool_calls:
                tx.add_message(cid, "tool", tools.run(call), tool_call_id=call["id"])
            result = tx.continue_chat(cid)
            for k, v in result.usage.items():
                if isinstance(v, int):
                    usage[k] = usage.get(k, 0) + v
        page = tx.get_messages(cid, min(100, result.message.seq - first_seq + 1))
        window = tx.build_context(cid)
        return {"conversation_id": str(cid),
                "messages": [message_json(m) for m in page.messages if m.seq >= first_seq],
                "usage": usage, "finish_reason": result.finish_reason, "model": result.model,
                "context": context_json(window)}

    return app


def __getattr__(name: str):
    # `uvicorn chat_app.server:app` builds the app from the environment on first access
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
