"""A fake OpenAI-compatible endpoint on 127.0.0.1 for the worker tests: records every request
and answers according to `mode` (ok, 500, 429, hang, badjson, empty)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    def __init__(self):
        self.mode = "ok"
        self.retry_after = 2
        self.hang_seconds = 30
        self.delay = 0.0
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "json": json.loads(body), "at": time.time(), "mode": fake.mode})
                    n = len(fake.requests)
                mode = fake.mode
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
                    return self.reply(200, {"choices": []})
                time.sleep(fake.delay)
                return self.reply(200, {"id": f"chatcmpl-{n}", "object": "chat.completion",
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"SUMMARY #{n}: the user and the assistant talked."}, "finish_reason": "stop"}]})

            def reply(self, status, obj, headers=None, raw=None):
                data = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): expected in hang mode

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
