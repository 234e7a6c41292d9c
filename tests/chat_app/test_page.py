"""The page as a new user meets it: on a slow network, on a phone, with the keyboard only, with a
bad token, with a long paste, when the LLM fails. Each test is a bug the previous page had."""
import os
import subprocess
import time

from conftest import CHROMIUM, SHOTS, admin, auth, bubbles, send, shot, user


def conversation_messages(app, name, cid):
    status, _, body = app.request("GET", f"/conversations/{cid}/messages", name=name)
    assert status == 200
    return body["messages"]


def new_conversation(page):
    page.click("#new-conversation")
    page.wait_for_function("document.querySelectorAll('#message-list .msg').length === 0")


def wait_title(page, title):
    page.wait_for_function("(t) => document.querySelector('#title')?.textContent === t", arg=title)


def llm_calls_for(fake, text):
    """The stand-in LLM's requests whose last message is `text` (the worker's summaries of other
    tests' conversations arrive at the same server)."""
    return [r for r in fake.requests if r["path"].endswith("/chat/completions") and r["json"]["messages"][-1].get("content") == text]


def open_ids(page):
    return page.locator("#conversations li").evaluate_all("els => els.map(e => e.dataset.id)")


def test_enter_twice_on_a_slow_network_sends_once(app, open_as, fake):
    name = user()
    page = open_as(name)
    send(page, "first")
    cid = open_ids(page)[0]
    fake.delay = 1.5
    page.fill("#composer-input", "only once, please")
    page.press("#composer-input", "Enter")
    page.press("#composer-input", "Enter")
    page.click("#send", force=True)  # disabled while the turn is under way: nothing happens
    assert page.locator("#send").is_disabled()
    page.wait_for_selector("#send:not([disabled])", timeout=20000)
    rows = [(m["role"], m["content"]) for m in conversation_messages(app, name, cid)]
    assert rows.count(("user", "only once, please")) == 1
    assert len(llm_calls_for(fake, "only once, please")) == 1, "one LLM call for one message"
    assert bubbles(page, "user") == ["first", "only once, please"]


def test_a_reply_never_takes_the_view_from_the_conversation_open_now(app, open_as, fake):
    name = user()
    page = open_as(name)
    send(page, "conversation A")
    new_conversation(page)
    send(page, "conversation B")
    a, b = open_ids(page)[1], open_ids(page)[0]
    page.locator("#conversations li", has_text="conversation A").click()
    wait_title(page, "conversation A")
    fake.delay = 2.0
    page.fill("#composer-input", "a slow question")
    page.press("#composer-input", "Enter")
    page.wait_for_selector("#message-list .msg.thinking")
    page.locator("#conversations li", has_text="conversation B").click()
    wait_title(page, "conversation B")
    # the answer arrives while B is open: B stays, with its own messages and address
    page.wait_for_function(f"document.querySelector('#conversations li[data-id=\"{a}\"] .meta').textContent.startsWith('4 messages')",
                           timeout=20000)
    assert page.inner_text("#title") == "conversation B"
    assert page.url.endswith(f"#/c/{b}")
    assert bubbles(page, "user") == ["conversation B"]
    assert not page.locator("#composer-input").is_disabled()
    page.locator("#conversations li", has_text="conversation A").click()
    page.wait_for_function("document.querySelectorAll('#message-list .msg.user').length === 2")
    assert bubbles(page, "user") == ["conversation A", "a slow question"]


def test_each_conversation_has_its_own_address(app, open_as):
    page = open_as(user())
    send(page, "the first one")
    new_conversation(page)
    send(page, "the second one")
    second, first = open_ids(page)
    assert page.url.endswith(f"#/c/{second}")
    page.locator("#conversations li", has_text="the first one").click()
    wait_title(page, "the first one")
    assert page.url.endswith(f"#/c/{first}")
    page.reload()  # reload keeps the open conversation
    wait_title(page, "the first one")
    assert bubbles(page, "user") == ["the first one"]
    page.go_back()
    wait_title(page, "the second one")
    page.go_forward()
    wait_title(page, "the first one")


def test_new_conversation_clicks_do_not_pile_up_empty_conversations(app, open_as):
    name = user()
    page = open_as(name)
    for _ in range(3):
        page.click("#new-conversation")
        page.wait_for_selector("#meter:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#conversations li').length === 1")
    time.sleep(0.3)
    status, _, body = app.request("GET", "/conversations", name=name)
    assert status == 200 and len(body["conversations"]) == 1


def test_a_phone_gets_a_drawer_not_a_squeezed_sidebar(app, open_as):
    page = open_as(user(), width=390, height=844)
    send(page, "hello from a phone, with a sentence long enough to wrap over several lines")
    sidebar = page.locator(".sidebar").bounding_box()
    assert sidebar["x"] + sidebar["width"] <= 0, "the sidebar is off screen until asked for"
    bubble = page.locator("#message-list .msg.user").first.bounding_box()
    assert bubble["width"] > 250, "messages use the width of the screen"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing scrolls sideways"
    shot(page, "09-phone")
    page.click("#menu")
    page.wait_for_function("document.querySelector('.sidebar').getBoundingClientRect().left >= 0")
    shot(page, "10-phone-drawer")
    page.locator("#conversations li").first.click()  # choosing a conversation closes the drawer
    page.wait_for_function("document.querySelector('.sidebar').getBoundingClientRect().right <= 0")


def test_the_keyboard_reaches_conversations_and_hits_and_sign_out_asks(app, open_as):
    asked = []
    name = user()
    page = open_as(name, dialogs=asked)
    send(page, "keyboard words")
    page.click("#new-conversation")
    wait_title(page, "New conversation")
    page.focus("#search-input")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#conversations li') !== null"), "Tab from search reaches the list"
    # the list's first item is the empty conversation; the next one is reached with Tab, opened with Enter
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    wait_title(page, "keyboard words")
    page.fill("#search-input", "keyboard")
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-results:not([hidden]) .hit")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('hit')"), "Tab from search reaches the hits"
    page.click("#signout")
    assert asked and "Sign out?" in asked[0]
    assert page.locator("#app").count() == 1, "a dismissed question keeps the user signed in"


def test_a_search_hit_opens_its_message_and_results_page_on(app, open_as, database):
    name = user()
    page = open_as(name)
    send(page, "start")
    cid = open_ids(page)[0]
    with admin(database) as c:
        c.execute("SELECT set_config('request.jwt.claims', %s, false)",
                  (f'{{"sub": "{auth.demo_user_id(name)}", "role": "authenticated"}}',))
        for i in range(60):
            word = "needle" if i % 2 == 0 else "hay"
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"{word} number {i}"))
        c.execute("SELECT memory.add_message(%s, 'user', 'the zebra is here')", (cid,))
        zebra = c.execute("SELECT max(seq) FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).fetchone()[0]
        c.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, "after " * 10))
        for i in range(40):
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"filler {i}"))
    page.fill("#search-input", "needle")
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-results:not([hidden]) .hit")
    assert page.locator("#search-results .hit").count() == 20
    page.click("#more-results")
    page.wait_for_function("document.querySelectorAll('#search-results .hit').length === 30")
    assert page.locator("#more-results").count() == 0, "no more pages after the last"
    page.fill("#search-input", "zebra")
    page.press("#search-input", "Enter")
    # the needle hits stay on screen until the new query's answer replaces them: wait for that one
    zebra_hit = page.locator("#search-results .hit", has_text="zebra")
    zebra_hit.wait_for()
    assert page.locator("#search-results .hit").count() == 1, "the new query's hits replace the old ones"
    zebra_hit.click()
    target = page.locator(f"#message-list .msg.highlight[data-seq='{zebra}']")
    target.wait_for()
    assert target.is_visible() and target.locator(".content").inner_text() == "the zebra is here"
    assert page.evaluate(f"""(() => {{ const r = document.querySelector(".msg[data-seq='{zebra}']").getBoundingClientRect();
                                       const box = document.querySelector('#messages').getBoundingClientRect();
                                       return r.top >= box.top && r.bottom <= box.bottom; }})()"""), "scrolled into view"
    shot(page, "11-search-hit-highlighted")
    page.click("#show-latest")  # the page around the hit is not the newest: one click back to it
    page.wait_for_function("document.querySelector('#message-list .msg:last-child .content').textContent === 'filler 39'")
    assert page.locator("#show-latest").count() == 0


def test_a_bad_token_says_so_and_the_footer_names_the_user(app, open_as):
    page = open_as(user(), token="not-a-token")
    page.wait_for_selector("#signin-error")
    assert "sign in again" in page.inner_text("#signin-error")
    shot(page, "12-bad-token")
    page = open_as("carol")
    assert page.inner_text("#who") == "carol"


def test_a_long_paste_is_refused_before_sending_not_cut(app, open_as, fake):
    page = open_as(user())
    page.fill("#composer-input", "x" * 8005)
    page.wait_for_selector("#too-long:not([hidden])")
    assert "Shorten it by 5" in page.inner_text("#too-long")
    assert page.locator("#send").is_disabled()
    page.press("#composer-input", "Enter")
    assert len(page.input_value("#composer-input")) == 8005, "nothing is cut"
    page.press("#composer-input", "End")
    for _ in range(5):
        page.press("#composer-input", "Backspace")
    page.wait_for_selector("#too-long", state="hidden")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('#message-list .msg.assistant:not(.thinking)').length === 1")
    assert len(llm_calls_for(fake, "x" * 8000)) == 1


def test_an_llm_failure_is_said_plainly_with_a_retry(app, open_as, fake):
    page = open_as(user())
    fake.mode = "500"
    page.fill("#composer-input", "will this work?")
    page.click("#send")
    page.wait_for_selector("#error")
    text = page.inner_text("#error")
    assert "could not answer" in text and "127.0.0.1" not in text and "http" not in text
    shot(page, "13-llm-error")
    fake.mode = "ok"
    page.click("#retry")
    page.wait_for_function("document.querySelectorAll('#message-list .msg.assistant:not(.thinking)').length === 1")
    assert bubbles(page, "user") == ["will this work?"]
    assert page.locator("#error").count() == 0


def test_replies_render_markdown_with_copyable_code(app, open_as):
    page = open_as(user())
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    text = "Try **this**:\n\n```python\nprint('hi')\n```\n\n- one\n- two\n\n[docs](https://example.com) [bad](javascript:alert(1))"
    page.fill("#composer-input", text)
    page.click("#send")
    reply = page.locator("#message-list .msg.assistant:not(.thinking) .content")
    reply.wait_for()
    assert reply.locator("strong").inner_text() == "this"
    assert reply.locator(".code-block pre").inner_text() == "print('hi')"
    assert reply.locator("ul li").all_inner_texts() == ["one", "two"]
    assert reply.locator("a").count() == 1 and reply.locator("a").get_attribute("href") == "https://example.com"
    assert "monospace" in reply.locator(".code-block pre code").evaluate("el => getComputedStyle(el).fontFamily")
    # the user's own message stays plain text
    assert page.locator("#message-list .msg.user .content").inner_text() == text
    reply.locator(".code-block .copy").click()
    page.wait_for_function("document.querySelector('.code-block .copy').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    shot(page, "14-markdown-reply")


def test_rename_regenerate_and_export(app, open_as, fake):
    name = user()
    page = open_as(name)
    send(page, "name me")
    cid = open_ids(page)[0]
    page.click("#rename")
    page.fill("#title-input", "  Renamed chat  ")
    page.press("#title-input", "Enter")
    wait_title(page, "Renamed chat")
    page.wait_for_function("document.querySelector('#conversations li .name').textContent === 'Renamed chat'")
    page.click("#rename")
    page.fill("#title-input", "not saved")
    page.press("#title-input", "Escape")
    assert page.inner_text("#title") == "Renamed chat"

    before = conversation_messages(app, name, cid)
    fake.delay = 1.0
    page.click("#regenerate")
    page.wait_for_selector("#message-list .msg.thinking")
    assert page.locator("#send").is_disabled(), "one turn at a time: the composer waits for the new answer"
    page.wait_for_selector("#message-list .msg.thinking", state="detached", timeout=20000)
    after = conversation_messages(app, name, cid)
    assert len(llm_calls_for(fake, "name me")) == 2, "the turn's call and the regenerated one"
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[0]["id"] == before[0]["id"] and after[1]["id"] != before[1]["id"], "a new answer replaced the old one"
    assert page.locator("#message-list .msg.assistant").count() == 1

    with page.expect_download() as download:
        page.click("#export-json")
    exported = open(download.value.path()).read()
    assert '"name me"' in exported and download.value.suggested_filename == f"conversation-{cid}.json"
    shot(page, "15-renamed")


def test_the_phone_layout_of_a_conversation_with_code(app, open_as):
    page = open_as(user(), width=390, height=844)
    page.fill("#composer-input", "Here is code:\n```\nfor (let i = 0; i < 10; i++) { console.log('a long line of code', i); }\n```")
    page.click("#send")
    page.wait_for_selector("#message-list .msg.assistant:not(.thinking) .code-block")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "long code scrolls inside its block, not the page"
    shot(page, "16-phone-code")


def test_the_usage_dashboard_shows_the_users_own_figures(app, open_as):
    name = user()
    page = open_as(name)
    send(page, "Hello, usage!")
    send(page, "What time is it?")
    page.click("#usage-open")
    page.wait_for_selector("#usage-chart rect", state="attached")
    assert page.url.endswith("#/usage")
    # 2 user messages, 2 answers, 1 tool call and its result; 3 LLM calls (the tool round asks again)
    assert page.inner_text("#total-messages") == "6"
    assert page.inner_text("#total-calls") == "3"
    assert page.locator("#usage-chart rect").count() == 60, "30 days, two series"
    heights = page.locator("#usage-chart rect").evaluate_all("els => els.map(e => e.getBBox().height)")
    assert sum(1 for h in heights if h > 0) == 2, "today's two bars; the other days are empty"
    assert page.locator("#tool-usage tbody tr").all_inner_texts() == ["clock\t1\t1\t0"]
    assert page.locator("#agent-usage tbody tr td").first.inner_text() == "assistant"
    shot(page, "17-usage-dashboard")
    # another user's dashboard holds none of it
    other = open_as(user())
    other.click("#usage-open")
    other.wait_for_selector("#usage .empty")
    assert other.inner_text("#total-messages") == "0"
    assert other.locator("#tool-usage tbody tr").count() == 0
    # a conversation in the list takes the main area back
    page.locator("#conversations li").first.click()
    wait_title(page, "Hello, usage!")


def test_sharing_members_offers_and_a_read_only_link(app, open_as, browser):
    alice, bob = user(), user()
    page = open_as(alice)
    send(page, "the secret recipe")
    cid = open_ids(page)[0]
    # the first 10 shares from one owner take effect at once (memory.max_unrequested_shares);
    # past them a share waits for the recipient's consent
    for i in range(10):
        other_cid = app.request("POST", "/conversations", {"title": f"shared {i}"}, name=alice)[2]["id"]
        assert app.request("POST", f"/conversations/{other_cid}/members", {"user": bob}, name=alice)[0] == 201
    page.click("#share")
    page.fill("#share-user", bob)
    page.select_option("#share-role", "viewer")
    page.click("#share-add")
    page.wait_for_function("document.querySelectorAll('#members li').length === 2")
    rows = [r.split("\n") for r in page.locator("#members li").all_inner_texts()]
    assert rows[0] == ["you", "owner"] and rows[1][0].startswith("user ") and rows[1][1:] == ["viewer", "remove"]
    page.click("#link-create")
    link = page.input_value("#link-url")
    assert "/#/shared/" in link
    page.wait_for_function("document.querySelectorAll('#links li').length === 1")
    shot(page, "18-share-dialog")
    page.click("#share-close")

    # bob sees the offer, not yet the conversation; accepting brings it, read-only
    other = open_as(bob)
    other.wait_for_selector("#offers .offer")
    assert other.inner_text("#offers .offer").startswith("user ") and "shared 1 conversation with you" in other.inner_text("#offers")
    assert other.locator(f"#conversations li[data-id='{cid}']").count() == 0
    other.click("#offers .accept")
    other.wait_for_selector(f"#conversations li[data-id='{cid}']")
    assert other.locator("#offers").count() == 0
    other.click(f"#conversations li[data-id='{cid}']")
    wait_title(other, "the secret recipe")
    other.wait_for_selector("#read-only")
    assert other.locator("#composer-input, #share, #delete, #rename, #regenerate, #summarize").count() == 0
    assert bubbles(other, "user") == ["the secret recipe"]
    shot(other, "19-shared-with-bob")
    # "New Conversation" makes bob's own, never reusing an empty one alice shared
    other.click("#new-conversation")
    other.wait_for_function("document.querySelectorAll('#conversations li').length === 12")
    other.wait_for_selector("#composer-input")

    # the link opens for anyone, without signing in, read-only
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    try:
        public = ctx.new_page()
        public.goto(link)
        public.wait_for_selector("#shared #message-list .msg.assistant")
        assert public.inner_text("#title") == "the secret recipe"
        assert public.locator("#composer-input, #signin, #conversations").count() == 0
        shot(public, "20-public-link-phone")

        # alice removes bob and revokes the link: both stop at once
        page.click("#share")
        page.wait_for_function("document.querySelectorAll('#members li').length === 2")
        page.locator("#members li", has_text="viewer").locator(".remove").click()
        page.wait_for_function("document.querySelectorAll('#members li').length === 1")
        page.click("#links .revoke")
        page.wait_for_selector("#links li .role")
        assert page.inner_text("#links li .role") == "revoked"
        public.reload()
        public.wait_for_selector("#shared #error")
        assert "does not work" in public.inner_text("#error")
        assert public.locator(".msg").count() == 0
    finally:
        ctx.close()
    other.reload()
    other.wait_for_selector("#app")
    other.wait_for_function("document.querySelectorAll('#conversations li').length === 11")
    assert other.locator(f"#conversations li[data-id='{cid}']").count() == 0
    assert app.request("GET", f"/conversations/{cid}/messages", name=bob)[0] == 404


def test_a_pdf_export_a_person_can_read(app, open_as, tmp_path):
    page = open_as(user())
    send(page, "Grüße aus Köln — Привет, Αθήνα")
    send(page, "What time is it?")
    with page.expect_download() as download:
        page.click("#export-pdf")
    path = tmp_path / "conversation.pdf"
    download.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF-") and download.value.suggested_filename.endswith(".pdf")
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout
    assert "Grüße aus Köln — Привет, Αθήνα" in text, "the title and the text, beyond Latin-1 (DejaVu: Latin, Greek, Cyrillic, …)"
    assert "User · #1" in text and "Assistant · #2" in text
    assert "Tool call: clock" in text and '"tz": "UTC"' in text and '"now"' in text, "the call's input and its result"
    assert "The tool said:" in text
    # rendered to an image, as a reader's viewer would (looked at: target/chat-app-screenshots/21-pdf-page-1.png)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(path), os.path.join(SHOTS, "21-pdf-page")], check=True)
    png = os.path.join(SHOTS, "21-pdf-page-1.png")
    assert os.path.getsize(png) > 5000, "a page with content, not a blank one"


def test_voice_a_spoken_message_and_a_reply_read_aloud(app, fake, browser, tmp_path):
    """The browser records (Chromium's fake microphone plays a WAV spoken by espeak-ng), the app
    relays the recording to the provider's /audio/transcriptions, the words land in the composer;
    a reply's speaker asks /audio/speech and the page plays what comes back."""
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "what a lovely day to talk to a database"], check=True)
    voice_browser = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required"])
    try:
        ctx = voice_browser.new_context(viewport={"width": 1200, "height": 760}, bypass_csp=True)
        ctx.grant_permissions(["microphone"], origin=app.url)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        page.goto(f"{app.url}/#token={app.token(user())}")
        page.click("#record")
        page.wait_for_selector("#voice-status:not([hidden])")
        assert page.inner_text("#voice-status") == "Listening…"
        page.wait_for_timeout(1500)
        page.click("#record")  # stop: the recording goes to the provider
        page.wait_for_function("document.querySelector('#composer-input').value.startsWith('stand-in transcription of')")
        heard = page.input_value("#composer-input")
        sent = [r for r in fake.requests if r["path"].endswith("/audio/transcriptions")][-1]
        audio = sent["form"]["file"]
        assert sent["form"]["model"] == "whisper-large-v3" and sent["headers"]["authorization"] == "Bearer sk-audio-tests"
        assert audio["type"] in ("audio/webm", "audio/ogg") and len(audio["data"]) > 1000, "a real recording"
        assert heard == f"stand-in transcription of {len(audio['data'])} bytes of {audio['type']}"
        page.click("#send")  # the user read it, and sends it
        page.wait_for_selector("#message-list .msg.assistant:not(.thinking)")
        page.click("#message-list .msg.assistant .speak")
        page.wait_for_function("(() => { const a = document.querySelector('#speech-audio'); return a && a.duration > 0.3; })()")
        spoken = [r for r in fake.requests if r["path"].endswith("/audio/speech")][-1]["json"]
        assert spoken["input"] == f"You said: {heard}" and spoken["model"] == "stand-in-tts"
        shot(page, "22-voice")
        ctx.close()
    finally:
        voice_browser.close()


def test_the_dialogs_and_the_dashboard_fit_a_phone(app, open_as):
    page = open_as(user(), width=390, height=844)
    page.fill("#composer-input", "A **phone** reply with `code` and a list:\n\n- one\n- two")
    page.click("#send")
    page.wait_for_selector("#message-list .msg.assistant:not(.thinking) .markdown li")
    page.click("#share")
    page.wait_for_selector("#share-dialog #members li")
    box = page.locator("#share-dialog").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, "the dialog fits the screen"
    shot(page, "23-phone-share-dialog")
    page.click("#share-close")
    page.click("#menu")
    page.click("#usage-open")
    page.wait_for_selector("#usage-chart")
    page.wait_for_function("document.querySelector('.sidebar').getBoundingClientRect().right <= 0")
    page.wait_for_timeout(300)  # the drawer's slide has ended
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "24-phone-usage")
