"""A stand-in OpenTelemetry collector on 127.0.0.1: accepts OTLP/HTTP JSON on POST /v1/traces,
keeps every span (flattened, attributes as a dict) and can be made slow (`delay` seconds before it
answers) or refuse with a status (`status`)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def value(v):
    """An OTLP/JSON AnyValue as a Python value (64-bit integers arrive as strings)."""
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [value(x) for x in v["arrayValue"].get("values", [])]
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    raise ValueError(f"unexpected OTLP value {v}")


class FakeCollector:
    def __init__(self):
        self.spans = []
        self.requests = []
        self.delay = 0.0
        self.status = 200
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(collector.delay)
                with collector.lock:
                    collector.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body})
                    if collector.status == 200:
                        for rs in json.loads(body)["resourceSpans"]:
                            resource = {a["key"]: value(a["value"]) for a in rs["resource"]["attributes"]}
                            for ss in rs["scopeSpans"]:
                                for span in ss["spans"]:
                                    span = dict(span, resource=resource, scope=ss["scope"]["name"],
                                                attributes={a["key"]: value(a["value"]) for a in span["attributes"]})
                                    collector.spans.append(span)
                data = b"{}"
                try:
                    self.send_response(collector.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, **attributes):
        """The spans received so far whose attributes include these."""
        with self.lock:
            return [s for s in self.spans if all(s["attributes"].get(k) == v for k, v in attributes.items())]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
