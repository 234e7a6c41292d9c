"""A fake OpenAI-compatible endpoint on 127.0.0.1 for the worker and chat tests: records every
request (with the times it arrived and, for ok answers, was answered) and answers according to `mode` (ok, 500, 429, hang, badjson, empty, refuse).

In `ok` mode it answers like a tiny deterministic model: a summary request gets "SUMMARY #n";
a chat whose last message is a tool result gets "The tool said: …"; a user message containing
"what time" with a `clock` tool offered gets a call of that tool; anything else gets
"You said: <the user's message>"; a fact extraction request gets decisions from `extract_facts`
below. Usage is reported like OpenAI's. It also answers the audio
endpoints: /audio/transcriptions with "stand-in transcription of N bytes of <type>", and
/audio/speech with a short tone (WAV); and /embeddings with `embed` below (in the same modes as
chat; `empty` answers no vectors)."""
import email.policy
import hashlib
import io
import json
import math
import re
import struct
import threading
import time
import wave
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(req, n):
    msgs = req.get("messages", [])
    last = msgs[-1] if msgs else {}
    tools = [t["function"]["name"] for t in req.get("tools", [])]
    message = {"role": "assistant", "content": None}
    finish = "stop"
    if msgs and "running summary" in (msgs[0].get("content") or ""):
        message["content"] = f"SUMMARY #{n}: the user and the assistant talked."
    elif msgs and "long-term memory facts" in (msgs[0].get("content") or ""):
        message["content"] = json.dumps({"facts": extract_facts(msgs[-1]["content"])})
    elif last.get("role") == "tool":
        message["content"] = f"The tool said: {last.get('content')}"
    elif "clock" in tools and "what time" in (last.get("content") or "").lower():
        message["tool_calls"] = [{"id": f"call_{n}", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\": \"UTC\"}"}}]
        finish = "tool_calls"
    else:
        message["content"] = f"You said: {last.get('content')}"
    prompt = sum(len((m.get("content") or "").split()) + 4 for m in msgs)
    completion = len((message["content"] or "").split()) + 1
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": req.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


MY_X_IS = re.compile(r"^my (\w+) is (.+?)[.!]?$", re.I)
FORGET_MY = re.compile(r"^forget (?:about )?my (\w+)", re.I)
I_STATEMENT = re.compile(r"^i (am|have|like|live|work|own) (.+?)[.!]?$", re.I)


def extract_facts(prompt):
    """The stand-in extractor's decisions over an extraction prompt ("Known facts:" numbered, then
    "New messages:" lines): "[user] My X is Y" adds "The user's X is Y." or updates the known fact
    about X; "[user] Forget my X" deletes it; "[user] I am/have/like/live/work/own …" adds "The user
    said: I …". Lines of others ("[another participant]", "[assistant]") are ignored, as asked."""
    known_part, _, new_part = prompt.partition("\nNew messages:\n")
    known = {}
    for line in known_part.splitlines():
        m = re.match(r"^(\d+)\. (.*)$", line)
        if m:
            known[int(m.group(1))] = m.group(2)
    def about(x):
        return next((i for i, f in known.items() if f.lower().startswith(f"the user's {x.lower()} is ")), None)
    out = []
    for line in new_part.splitlines():
        if not line.startswith("[user] "):
            continue
        text = line[len("[user] "):].strip()
        if m := MY_X_IS.match(text):
            fact = f"The user's {m.group(1).lower()} is {m.group(2)}."
            i = about(m.group(1))
            out.append({"event": "UPDATE", "id": i, "text": fact} if i else {"event": "ADD", "text": fact})
        elif m := FORGET_MY.match(text):
            i = about(m.group(1))
            if i:
                out.append({"event": "DELETE", "id": i})
        elif I_STATEMENT.match(text):
            out.append({"event": "ADD", "text": f"The user said: {text.rstrip('.!')}."})
    return out


# Words that mean the same to the stand-in embedding model: each group is one feature, so that a
# paraphrase ("automobile" for "car") lands near the original where full-text search misses it.
SYNONYMS = {w: group[0] for group in [
    ("car", "cars", "automobile", "automobiles", "vehicle", "vehicles", "sedan"),
    ("repair", "repairs", "fix", "fixed", "fixing", "mechanic", "garage", "broke", "broken", "breakdown"),
    ("dog", "dogs", "puppy", "puppies", "canine", "hound"),
    ("trip", "trips", "vacation", "holiday", "holidays", "journey", "travel", "travelling", "traveling"),
    ("doctor", "doctors", "physician", "medic", "clinic"),
    ("allergy", "allergies", "allergic", "intolerance"),
    ("peanut", "peanuts", "nut", "nuts", "groundnut"),
    ("pay", "paid", "salary", "wage", "wages", "income", "earn", "earns", "earning"),
] for w in group}
STOPWORDS = {"a", "an", "the", "my", "i", "is", "was", "to", "of", "and", "or", "in", "on", "for", "it", "me", "what", "about",
             "with", "at", "be", "this", "that", "you", "your", "do", "did", "has", "have", "had"}


def embed(text, dims=64):
    """A deterministic unit vector of `text`: every word (through SYNONYMS, without STOPWORDS)
    adds one signed feature picked by its hash, so texts sharing words or synonyms point the same
    way; a text with no word gets the first axis."""
    v = [0.0] * dims
    words = "".join(c.lower() if c.isalnum() else " " for c in text).split()
    for w in words:
        if w in STOPWORDS:
            continue
        h = hashlib.sha256(SYNONYMS.get(w, w).encode()).digest()
        v[int.from_bytes(h[:4], "big") % dims] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in v))
    if norm == 0:
        return [1.0] + [0.0] * (dims - 1)
    return [x / norm for x in v]


def embeddings_answer(req):
    inputs = req.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dims = int(req.get("dimensions") or 64)
    tokens = sum(len(t.split()) for t in inputs)
    return {"object": "list", "model": req.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": embed(t, dims)} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def parse_form(content_type, body):
    """A multipart/form-data body as {name: text} for fields and {name: {"data", "type", "filename"}} for files."""
    message = BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            form[name] = {"data": part.get_payload(decode=True), "type": part.get_content_type(), "filename": part.get_filename()}
        else:
            form[name] = part.get_content().strip()
    return form


def tone_wav(seconds=0.4, rate=8000):
    """A 440 Hz tone as a WAV file: what the stand-in says for any text."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return buf.getvalue()


class FakeLLM:
    def __init__(self, port=0):
        self.mode = "ok"
        self.retry_after = 2
        self.hang_seconds = 30
        self.delay = 0.0
        self.ok_requests_left = None  # when set: answer that many more requests, then fail with 500
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                """GET /_last_request: the body of the newest request, for a caller in another process
                (the chat-turn benchmark replays it)."""
                if self.path != "/_last_request" or not fake.requests:
                    return self.reply(404, {"error": {"message": "no such request"}})
                self.reply(200, fake.requests[-1].get("json"))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/audio/transcriptions") or self.path.endswith("/audio/speech"):
                    return self.audio(body)
                entry = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                         "json": json.loads(body), "at": time.time(), "mode": fake.mode}
                with fake.lock:
                    fake.requests.append(entry)
                    n = len(fake.requests)
                    mode = fake.mode
                    if fake.ok_requests_left is not None:
                        mode = "ok" if fake.ok_requests_left > 0 else "500"
                        fake.ok_requests_left -= 1
                if mode == "hang":
                    time.sleep(fake.hang_seconds)
                    return self.reply(200, {"choices": [{"message": {"content": "too late"}}]})
                if mode == "500":
                    return self.reply(500, {"error": {"message": "internal error"}})
                if mode == "429":
                    return self.reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": str(fake.retry_after)})
                if mode == "badjson":
                    return self.reply(200, None, raw=b"<html>not json</html>")
                if mode == "empty":
                    return self.reply(200, {"data": []} if self.path.endswith("/embeddings") else {"choices": []})
                if mode == "refuse":
                    return self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                                                 "refusal": "I cannot help with that."}, "finish_reason": "stop"}]})
                time.sleep(fake.delay)
                if self.path.endswith("/embeddings"):
                    self.reply(200, embeddings_answer(json.loads(body)))
                else:
                    self.reply(200, answer(json.loads(body), n))
                entry["done"] = time.time()

            def audio(self, body):
                """The audio endpoints: a transcription names what it heard (deterministic: the
                recording's size and type); speech is a short tone as WAV."""
                entry = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "at": time.time(),
                         "mode": fake.mode}
                if self.path.endswith("/audio/transcriptions"):
                    entry["form"] = parse_form(self.headers.get("Content-Type", ""), body)
                else:
                    entry["json"] = json.loads(body)
                with fake.lock:
                    fake.requests.append(entry)
                if fake.mode != "ok":
                    return self.reply(500, {"error": {"message": "internal error"}})
                if "form" in entry:
                    audio = entry["form"].get("file", {})
                    return self.reply(200, {"text": f"stand-in transcription of {len(audio.get('data', b''))} bytes of "
                                                    f"{audio.get('type')}"})
                return self.reply(200, None, raw=tone_wav(), content_type="audio/wav")

            def reply(self, status, obj, headers=None, raw=None, content_type="application/json"):
                data = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): expected in hang mode

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # a stand-in LLM for the demo: python3 tests/support/fake_llm.py PORT
    import sys
    fake = FakeLLM(int(sys.argv[1]))
    print(f"fake OpenAI-compatible LLM on http://127.0.0.1:{fake.port}/v1", flush=True)
    fake.thread.join()
