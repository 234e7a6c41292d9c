"""A LlamaIndex chat engine whose memory lives in memory_ext (MemoryExChatStore under
ChatMemoryBuffer). The model is any OpenAI-compatible endpoint; offline, the tests' stand-in
server (see examples/langchain_chat.py for the environment).

    MEMORY_EXT_DSN="host=127.0.0.1 dbname=app user=app" OPENAI_BASE_URL=http://127.0.0.1:8099/v1 \\
        python3 examples/llama_index_chat.py
"""
import os
import uuid

from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.llms.openai_like import OpenAILike

from memory_ext import MemoryClient
from memory_ext.llama_index import MemoryExChatStore


def main():
    memory = MemoryClient(os.environ["MEMORY_EXT_DSN"], user_id=os.environ.get("DEMO_USER_ID", str(uuid.uuid4())))
    llm = OpenAILike(model=os.environ.get("OPENAI_MODEL", "fake-model"), api_base=os.environ["OPENAI_BASE_URL"],
                     api_key=os.environ.get("OPENAI_API_KEY", "offline"), is_chat_model=True)
    # the two lines that put LlamaIndex's chat memory into memory_ext:
    store = MemoryExChatStore(client=memory)
    buffer = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="llama-demo", token_limit=2000)

    engine = SimpleChatEngine.from_defaults(llm=llm, memory=buffer)
    for question in ("Hello!", "Do you remember me?"):
        print(f"user: {question}\nassistant: {engine.chat(question).response}")
    print(f"stored under key llama-demo: {len(store.get_messages('llama-demo'))} messages; keys: {store.get_keys()}")
    memory.close()


if __name__ == "__main__":
    main()
