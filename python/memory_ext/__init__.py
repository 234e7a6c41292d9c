"""memory_ext: conversation memory for AI agents inside PostgreSQL, from Python.

    from memory_ext import MemoryClient
    memory = MemoryClient("host=… dbname=…", user_id="5d9f…")
    conv = memory.create_conversation(agent_id, "Weekend in Paris")
    memory.add_message(conv.id, "user", "Weather in Paris on Saturday?")
    window = memory.build_context(conv.id, 8000, "You are a travel assistant.")
    llm.chat.completions.create(model=…, messages=window.messages)

Adapters: `memory_ext.langchain` (BaseChatMessageHistory) and `memory_ext.llama_index`
(BaseChatStore)."""
from .client import AsyncMemoryClient, Identity, MemoryClient
from .errors import (
    ArchivedError,
    ConflictError,
    ConnectionInTransactionError,
    InvalidInputError,
    LimitExceededError,
    LLMError,
    LLMRefusalError,
    LLMTimeoutError,
    MemoryExError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
)
from .models import Agent, ChatResult, Conversation, Job, Message, MessagePage, Summary, SummaryStatus, Window

__version__ = "0.3.0"
__all__ = ["MemoryClient", "AsyncMemoryClient", "Identity", "MemoryExError", "ConnectionInTransactionError", "NotFoundError", "InvalidInputError",
           "PermissionDeniedError", "ConflictError", "LimitExceededError", "LLMError", "LLMTimeoutError",
           "LLMRefusalError", "ReadOnlyError", "ArchivedError", "Agent", "ChatResult", "Conversation", "Job", "Message",
           "MessagePage", "Summary", "SummaryStatus", "Window"]
