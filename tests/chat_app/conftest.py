"""Fixtures for the reference chat app's tests: a cluster of its own (PORT + 9) pointed at the
fake OpenAI-compatible server, the app's database prepared by examples/chat-app/setup.sql, the
app itself as a real uvicorn process on 127.0.0.1, and Debian's Chromium driven by Playwright.
Screenshots go to target/chat-app-screenshots/."""
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APP_DIR = os.path.join(ROOT, "examples", "chat-app")
SHOTS = os.path.join(ROOT, "target", "chat-app-screenshots")
sys.path.insert(0, APP_DIR)  # the app is a directory, not an installed package

from support import pg as support  # noqa: E402
from support.fake_llm import FakeLLM  # noqa: E402

PORT = support.PORT + 9
SECRET = "chat-app-tests-" + "s" * 32
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

from chat_app import auth  # noqa: E402

wait_for = support.wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fake():
    llm = FakeLLM()
    yield llm
    llm.stop()


@pytest.fixture(autouse=True)
def fake_ok(fake):
    fake.mode, fake.delay, fake.ok_requests_left = "ok", 0.0, None


@pytest.fixture(scope="session")
def database(fake):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{fake.port}/v1", "memory.llm_model": "stand-in",
                "memory.llm_api_key": "sk-chat-app-tests", "memory.llm_timeout": 3000, "memory.worker_naptime": 50,
                "memory.worker_database": "chat", "memory.max_attempts": 2, "memory.retry_backoff": 200}
    with support.llm_cluster("chat_app", PORT, settings) as port:
        with psycopg.connect(support.dsn(port=port), autocommit=True) as c:
            c.execute("CREATE DATABASE chat")
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "chat", "-q",
                        "-v", "ON_ERROR_STOP=1", "-f", os.path.join(APP_DIR, "setup.sql")], check=True)
        yield port


def admin(database):
    return psycopg.connect(support.dsn("chat", port=database), autocommit=True)


class App:
    def __init__(self, url, log_path):
        self.url, self.log_path = url, log_path

    def token(self, name):
        return auth.issue(SECRET, name)

    def request(self, method, path, body=None, token=None, name=None, headers=None):
        """(status, headers, parsed body) of one real HTTP request."""
        hdrs = dict(headers or {})
        if name:
            token = self.token(name)
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, h, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            status, h, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        text = raw.decode()
        try:
            return status, h, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, h, text

    def log(self):
        with open(self.log_path) as f:
            return f.read()


@pytest.fixture(scope="session")
def app(database, fake, tmp_path_factory):
    port = free_port()
    log_path = str(tmp_path_factory.mktemp("chat_app") / "app.log")
    env = dict(os.environ, CHAT_APP_DATABASE_URL=f"host=127.0.0.1 port={database} dbname=chat user=chat_app",
               CHAT_APP_JWT_SECRET=SECRET, CHAT_APP_STAND_IN="1", PYTHONPATH=APP_DIR,
               CHAT_APP_AUDIO_BASE_URL=f"http://127.0.0.1:{fake.port}/v1", CHAT_APP_AUDIO_API_KEY="sk-audio-tests",
               CHAT_APP_SPEECH_MODEL="stand-in-tts")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "chat_app.server:app", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=APP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    app = App(f"http://127.0.0.1:{port}", log_path)

    def up():
        try:
            return app.request("GET", "/config")[0] == 200
        except OSError:
            return False
    try:
        wait_for(up, timeout=30, step=0.2)
        yield app
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        # the flags keep Chromium from reaching for the network (closed here) at start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def open_as(app, browser):
    """open_as(name) → a page signed in as the demo user `name` (a fresh browser context each)."""
    contexts = []

    def open_page(name, width=1200, height=760, token=None, dialogs=None):
        """`token` replaces the user's valid one; `dialogs` collects confirm() texts and answers
        them with False (by default every confirm is accepted)."""
        # bypass_csp: Playwright's waits evaluate strings, which the page's CSP forbids; without
        # the CSP the hostile-content test also proves that the escaping alone holds
        ctx = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        if dialogs is None:
            page.on("dialog", lambda d: d.accept())
        else:
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{app.url}/#token={token or app.token(name)}")
        page.wait_for_selector("#app" if token is None else "#signin")
        return page
    yield open_page
    for ctx in contexts:
        ctx.close()


def user():
    return f"user-{uuid.uuid4().hex[:8]}"


def bubbles(page, role):
    return page.locator(f"#message-list .msg.{role}:not(.pending) .content").all_inner_texts()


def meter_tokens(page):
    used, budget = page.inner_text("#meter-text").split(" tokens")[0].split(" / ")
    return int(used), int(budget)


def send(page, text):
    """Types `text`, sends it, and waits for the answer."""
    before = page.locator("#message-list .msg.assistant").count()
    page.fill("#composer-input", text)
    page.click("#send")
    page.wait_for_function(f"document.querySelectorAll('#message-list .msg.assistant:not(.thinking)').length > {before}")
    page.wait_for_selector("#send:not([disabled])")


def shot(page, name):
    path = os.path.join(SHOTS, f"{name}.png")
    page.screenshot(path=path)
    return path
