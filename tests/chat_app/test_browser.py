"""The reference chat app in a real browser (Debian's Chromium, driven by Playwright): what a
user does, and what a second user and a hostile message must not be able to do."""
from conftest import admin, auth, bubbles, meter_tokens, send, shot, user


def test_a_conversation_with_a_tool_call_survives_a_reload(app, open_as):
    page = open_as(user())
    assert "stand-in LLM" in page.inner_text("#banner"), "the offline LLM must be labelled as a stand-in"
    page.click("#new-conversation")
    page.wait_for_selector("#meter:not([hidden])")
    used0, budget = meter_tokens(page)
    # the empty conversation's window is the agent's system prompt; the budget is the agent's
    # context minus its reply and its tools
    assert 0 < used0 < 50 and 2000 < budget < 3000
    shot(page, "01-new-conversation")

    send(page, "Hello, memory!")
    assert page.inner_text("#title") == "Hello, memory!"
    assert bubbles(page, "user") == ["Hello, memory!"]
    assert bubbles(page, "assistant") == ["You said: Hello, memory!"]
    used1, _ = meter_tokens(page)
    assert used1 > used0

    send(page, "What time is it?")
    tool = page.locator("#message-list details.tool")
    assert tool.count() == 1
    assert tool.locator("summary").inner_text() == "tool call: clock"
    tool.locator("summary").click()  # collapsible: the input and the output show when opened
    assert '"tz": "UTC"' in tool.locator("pre.input").inner_text()
    assert '"now"' in tool.locator("pre.output").inner_text()
    assert bubbles(page, "assistant")[-1].startswith("The tool said:")
    used2, _ = meter_tokens(page)
    assert used2 > used1
    assert page.locator("#meter-fill").get_attribute("class") == "meter-fill"  # far below the budget: green
    shot(page, "02-tool-call-and-token-meter")

    page.reload()
    page.wait_for_selector("#conversations li")
    titles = page.locator("#conversations li .name").all_inner_texts()
    assert titles == ["Hello, memory!"], "the first message titles the conversation"
    page.click("#conversations li")
    page.wait_for_selector("#message-list .msg.assistant")
    assert bubbles(page, "user") == ["Hello, memory!", "What time is it?"]
    assert meter_tokens(page)[0] == used2
    shot(page, "03-after-reload")


def test_switching_and_deleting_conversations(app, open_as):
    page = open_as(user())
    send(page, "first conversation")       # no conversation open: the turn starts one
    page.click("#new-conversation")
    page.wait_for_function("document.querySelectorAll('#message-list .msg').length === 0")
    send(page, "second conversation")
    page.wait_for_function("document.querySelectorAll('#conversations li').length === 2")
    items = page.locator("#conversations li .name")
    assert items.all_inner_texts() == ["second conversation", "first conversation"]  # newest first

    page.locator("#conversations li", has_text="first conversation").click()
    page.wait_for_function("document.querySelector('#title').textContent === 'first conversation'")
    assert bubbles(page, "user") == ["first conversation"]
    page.locator("#conversations li", has_text="second conversation").click()
    page.wait_for_function("document.querySelector('#title').textContent === 'second conversation'")
    assert bubbles(page, "user") == ["second conversation"]
    shot(page, "04-two-conversations")

    page.click("#delete")  # the confirm dialog is accepted
    page.wait_for_function("document.querySelectorAll('#conversations li').length === 1")
    assert page.locator("#conversations li .name").all_inner_texts() == ["first conversation"]
    page.reload()
    page.wait_for_selector("#conversations li")
    assert page.locator("#conversations li .name").all_inner_texts() == ["first conversation"]
    shot(page, "05-after-delete")


def test_hostile_content_is_shown_as_text(app, open_as):
    page = open_as(user())
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> **bold** `code`'
    send(page, hostile)
    assert bubbles(page, "user") == [hostile]
    # the reply is Markdown: its HTML stays text, its ** and ` become emphasis and code
    reply = page.locator("#message-list .msg.assistant .content")
    assert reply.inner_text() == 'You said: <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> bold code'
    assert reply.locator("strong").inner_text() == "bold" and reply.locator("code").inner_text() == "code"
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#message-list img, #message-list script").count() == 0
    assert page.locator("#conversations li .name").first.inner_text() == hostile[:80]
    page.reload()
    page.click("#conversations li")
    page.wait_for_selector("#message-list .msg.assistant")
    assert bubbles(page, "user") == [hostile]
    assert page.evaluate("window.__pwned") is None
    shot(page, "06-hostile-message-as-text")


def test_a_second_user_sees_none_of_the_first_users_conversations(app, open_as):
    alice, bob = user(), user()
    page = open_as(alice)
    send(page, "alice's secret plans")
    alice_id = page.locator("#conversations li").first.get_attribute("data-id")
    page.fill("#search-input", "secret plans")  # the owner finds it: the search works
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-results:not([hidden])")
    assert page.locator("#search-results .hit").count() == 2  # the message and the echo
    # the snippet's ** marks are shown as highlights, not as literal asterisks
    assert page.locator("#search-results .hit").first.locator("mark").all_inner_texts() == ["secret", "plans"]
    assert "**" not in page.inner_text("#search-results")

    other = open_as(bob)
    other.wait_for_timeout(300)
    assert other.locator("#conversations li").count() == 0
    other.fill("#search-input", "secret plans")
    other.press("#search-input", "Enter")
    other.wait_for_selector("#search-results:not([hidden])")
    assert other.inner_text("#search-results") == "No messages match."
    shot(other, "07-second-user-sees-nothing")
    # and by address: the API answers 404 for alice's conversation, as if it did not exist
    status, _, body = app.request("GET", f"/conversations/{alice_id}/messages", name=bob)
    assert status == 404 and "secret" not in str(body)


def test_the_conversation_list_scrolls_page_by_page(app, open_as):
    name = user()
    for i in range(45):
        assert app.request("POST", "/conversations", {"title": f"chat {i:02d}"}, name=name)[0] == 201
    page = open_as(name)
    page.wait_for_function("document.querySelectorAll('#conversations li').length >= 20")
    first = page.locator("#conversations li").count()
    assert first < 45, "the first page is not the whole list"
    for _ in range(10):
        page.locator("#conversations").evaluate("el => el.scrollTop = el.scrollHeight")
        page.wait_for_timeout(300)
    assert page.locator("#conversations li").count() == 45
    names = page.locator("#conversations li .name").all_inner_texts()
    assert names == [f"chat {i:02d}" for i in reversed(range(45))], "newest first, no duplicates or gaps"


def test_the_summary_indicator_appears_when_the_worker_summarized(app, open_as, database):
    name = user()
    page = open_as(name)
    send(page, "start")
    cid = page.locator("#conversations li").first.get_attribute("data-id")
    # a long history (about twice the agent's budget), appended as the user (what other clients
    # of the same account would do)
    with admin(database) as c:
        c.execute("SELECT set_config('request.jwt.claims', %s, false)",
                  (f'{{"sub": "{auth.demo_user_id(name)}", "role": "authenticated"}}',))
        for i in range(40):
            c.execute("SELECT memory.add_message(%s, %s, %s)",
                      (cid, "user" if i % 2 == 0 else "assistant", f"message {i} " + "lorem ipsum dolor " * 30))
    page.reload()
    page.click("#conversations li")
    page.wait_for_selector("#meter:not([hidden])")
    # what the window leaves out is said, not silent
    omitted = int(page.inner_text("#omitted").split()[0])
    assert 0 < omitted < 42 and page.inner_text("#omitted").endswith("earlier messages not in context")
    page.click("#summarize")
    page.wait_for_selector("#summary-badge:not([hidden])", timeout=20000)
    page.wait_for_function("document.querySelector('#summary-state')?.textContent === 'The summary is in the window.'", timeout=20000)
    # the agent's summary threshold sits below its budget: with the summary the window has room
    used, budget = meter_tokens(page)
    assert used < 0.85 * budget and "full" not in page.locator("#meter-fill").get_attribute("class")
    page.click("#summary-text summary")  # the summary itself can be read
    assert page.inner_text("#summary-text p").startswith("SUMMARY #")
    assert page.inner_text("#summary-text summary").startswith("Summary of messages 1–")
    shot(page, "08-summary-in-context")
