"""A LangChain chat loop whose history lives in memory_ext, with a tool call.

The model is any OpenAI-compatible endpoint (OPENAI_BASE_URL); offline, point it at the
stand-in server of the tests: `python3 tests/support/fake_llm.py 8099 &` and
OPENAI_BASE_URL=http://127.0.0.1:8099/v1. MEMORY_EXT_DSN names a database with memory_ext whose
login may assert `memory.user_id` (see the README's Identity section).

    MEMORY_EXT_DSN="host=127.0.0.1 dbname=app user=app" OPENAI_BASE_URL=http://127.0.0.1:8099/v1 \\
        python3 examples/langchain_chat.py
"""
import os
import uuid

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from memory_ext import MemoryClient
from memory_ext.langchain import MemoryExChatMessageHistory


@tool
def clock(tz: str = "UTC") -> str:
    """The current time in a time zone."""
    return f"12:00 in {tz}"


def main():
    memory = MemoryClient(os.environ["MEMORY_EXT_DSN"], user_id=os.environ.get("DEMO_USER_ID", str(uuid.uuid4())))
    llm = ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "fake-model"), base_url=os.environ["OPENAI_BASE_URL"],
                     api_key=os.environ.get("OPENAI_API_KEY", "offline")).bind_tools([clock])
    # the two lines that replace PostgresChatMessageHistory + trim_messages:
    history = MemoryExChatMessageHistory("langchain-demo", client=memory)
    window = lambda: history.context(max_tokens=2000, system_prompt="You are a terse assistant.")  # noqa: E731

    for question in ("Hello!", "What time is it?"):
        history.add_message(HumanMessage(question))
        reply = llm.invoke(window())
        history.add_message(reply)
        for call in reply.tool_calls:  # run the tools, store their results, ask again
            history.add_message(ToolMessage(clock.invoke(call["args"]), tool_call_id=call["id"]))
        if reply.tool_calls:
            reply = llm.invoke(window())
            history.add_message(reply)
        print(f"user: {question}\nassistant: {reply.content}")
    print(f"stored: {len(history.messages)} messages; window: {history.window(2000).token_count} tokens")
    memory.close()


if __name__ == "__main__":
    main()
