"""The examples run as a user would run them: a process of their own, the stand-in LLM as the
OpenAI-compatible endpoint, their history in memory_ext."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT, dsn, new_user

from memory_ext import MemoryClient


@pytest.mark.parametrize("script", ["langchain_chat.py", "llama_index_chat.py"])
def test_example_runs_offline(db, fake, script):
    uid = new_user()
    env = {**os.environ, "MEMORY_EXT_DSN": dsn(db), "OPENAI_BASE_URL": f"http://127.0.0.1:{fake.port}/v1",
           "DEMO_USER_ID": uid}
    seen = len(fake.requests)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "assistant: You said: Hello!" in out.stdout
    with MemoryClient(dsn(db), user_id=uid) as c:
        stored = [m for conv in c.list_conversations() for m in c.all_messages(conv.id)]
    if script == "langchain_chat.py":
        # the tool turn: a call of clock, its result, and the answer built on it
        assert "assistant: The tool said: 12:00 in UTC" in out.stdout
        assert [m.role for m in stored] == ["user", "assistant", "user", "assistant", "tool", "assistant"]
        assert fake.requests[seen + 1]["json"]["tools"][0]["function"]["name"] == "clock"
    else:
        assert "assistant: You said: Do you remember me?" in out.stdout
        assert [m.content for m in stored] == ["Hello!", "You said: Hello!", "Do you remember me?",
                                               "You said: Do you remember me?"]
        # the second request carried the first turn, read back from memory_ext
        assert [m["content"] for m in fake.requests[-1]["json"]["messages"]][-3:] == [
            "Hello!", "You said: Hello!", "Do you remember me?"]
