"""The chat page at ``/`` (web/), end to end: real Chromium driven by Playwright against the app
under gunicorn + gevent and the fake upstream.

Each test opens a fresh browser (its own user-data dir) and saves a screenshot as
``screenshot.png`` in its temp folder. The page is built first (``npm ci`` and ``npm run build``
in web/) when web/dist is missing. ``NEPTUN_DOCS_SCREENSHOTS=1`` also writes the README's
screenshots under docs/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from tests.fakes.protocols import expected_text

from .conftest import TIMEOUT_ENV
from .node import node_with_packages
from .server import ROOT, Gunicorn, upstream_env
from .test_streaming import directive

WEB = ROOT / "web"
DIST = WEB / "dist"
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
OLLAMA = "ollama/rwkv-6-world"
DEEPSEEK = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
PASSWORD = "long enough"
BUILD_TIMEOUT = 300

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def built_page():
    """web/dist, built as the README does (npm ci, npm run build) when it is missing."""
    if not (DIST / "index.html").is_file():
        node_with_packages(WEB, ("vite/package.json", "@ai-sdk/vue/package.json"))
        result = subprocess.run([shutil.which("npm"), "run", "build"], cwd=WEB, check=False,
                                capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"`npm run build` in web/ failed:\n{result.stdout[-3000:]}\n"
                        f"{result.stderr[-3000:]}", pytrace=False)
    return DIST


@pytest.fixture(scope="session")
def playwright_driver():
    """Playwright, driving the machine's Chromium (never a browser download of its own)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"these tests need Chromium at {CHROMIUM} (apt-get install chromium)",
                    pytrace=False)
    with sync_playwright() as playwright:
        playwright.selectors.set_test_id_attribute("data-test")
        yield playwright


class Browser:
    """One fresh Chromium (its own user-data dir) with one page; records dialogs, page errors
    and Content-Security-Policy violations."""

    def __init__(self, playwright, base_url: str, folder: Path, viewport: dict):
        self.base_url = base_url
        self.folder = folder
        self.context = playwright.chromium.launch_persistent_context(
            str(folder / "user-data"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport=viewport, base_url=base_url)
        self.page: Page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)

    def screenshot(self, name: str = "screenshot.png") -> Path:
        path = self.folder / name
        self.page.screenshot(path=str(path))
        return path

    # --- what a person does -------------------------------------------------------------

    def sign_up(self) -> dict:
        """Sign up on the page; returns the session's user."""
        page = self.page
        page.goto("/")
        page.get_by_test_id("mode-signup").click()
        email = f"web-{uuid.uuid4().hex[:10]}@example.com"
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_test_id("auth-submit").click()
        expect(page.get_by_test_id("logout")).to_be_visible()
        return self.get("/api/auth/session")["user"]

    def new_chat(self, model: str = OLLAMA) -> int:
        """Pick a model, create a chat; returns its id (from the address)."""
        page = self.page
        menu = page.get_by_role("button", name="Chats")
        if menu.is_visible():  # a phone: the chat list and model picker are a drawer
            menu.click()
            expect(page.get_by_test_id("new-chat")).to_be_in_viewport()
        page.get_by_test_id("model").select_option(model)
        before = page.url
        page.get_by_test_id("new-chat").click()
        page.wait_for_url(lambda url: url != before and re.search(r"#chat=\d+$", url))
        expect(page.get_by_test_id("chat-pane")).to_be_visible()
        return int(page.url.rsplit("=", 1)[1])

    def send(self, text: str) -> None:
        """Type a message and press Enter."""
        box = self.page.get_by_test_id("input")
        box.fill(text)
        box.press("Enter")

    def replies(self):
        return self.page.locator("[data-test=message][data-role=assistant]")

    def last_reply(self):
        return self.replies().last

    def wait_finished(self, reason: str = "stop", timeout: float = 20_000) -> None:
        """The last reply shows its finish reason."""
        expect(self.last_reply().get_by_test_id("usage")).to_contain_text(reason, timeout=timeout)

    def wait_reply_text(self, min_chars: int) -> None:
        self.page.wait_for_function(
            """n => { const r = [...document.querySelectorAll('[data-role=assistant] [data-test=reply]')].pop();
                      return r && r.innerText.length >= n; }""", arg=min_chars)

    def get(self, path: str):
        """A GET with the page's session cookie (the browser context's own request client)."""
        response = self.context.request.get(path)
        assert response.ok, (path, response.status, response.text())
        return response.json()

    def stored(self, user_id: int, chat_id: int) -> list[dict]:
        return self.get(f"/api/users/{user_id}/chats/{chat_id}/messages")["chatMessages"]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(playwright_driver, server, built_page, tmp_path):
    """Opens fresh browsers on the live server; each closes with a screenshot and with no
    dialog, page error or CSP violation seen."""
    opened: list[Browser] = []

    def open_(viewport: dict = DESKTOP, base_url: str | None = None) -> Browser:
        folder = tmp_path / f"browser{len(opened)}"
        folder.mkdir()
        browser = Browser(playwright_driver, base_url or server.base_url, folder, viewport)
        opened.append(browser)
        return browser

    yield open_
    for browser in opened:
        try:
            browser.screenshot()
        finally:
            browser.close()
        assert browser.dialogs == [], browser.dialogs
        assert browser.errors == [], browser.errors


def docs_screenshot(browser: Browser, name: str) -> None:
    """The README's screenshot, when asked for."""
    if os.environ.get("NEPTUN_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        browser.page.screenshot(path=str(DOCS / name))


MARKDOWN_REPLY = [
    "Here is a **short** answer with a list:\n\n",
    "1. Vue 3 renders the page\n2. `useChat` streams the reply\n3. Flask stores it\n\n",
    "```python\nprint(\"hello from neptun\")\n```\n\n",
    "| model | provider |\n|---|---|\n| rwkv-6-world | ollama |\n",
]


def test_the_page_is_served_with_its_headers(server, built_page):
    """/ is the built page: no-cache, a strict CSP, no inline script; its hashed assets are
    cached for a year; a missing asset is the JSON 404."""
    page = requests.get(server.base_url + "/", timeout=5)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "inline script"
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert any(path.endswith(".js") for path in assets) and any(p.endswith(".css") for p in assets)
    for path in assets:
        asset = requests.get(server.base_url + path, timeout=5)
        assert asset.status_code == 200
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    missing = requests.get(server.base_url + "/assets/nope-123.js", timeout=5)
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404


def test_sign_up_chat_and_a_streamed_markdown_reply(open_browser):
    """A wrong login shows the API's message; sign-up; the model's catalog description; a new
    chat; Shift+Enter is a new line, Enter sends; the reply streams in as Markdown with its
    finish reason and token usage; the stored reply matches."""
    browser = open_browser()
    page = browser.page
    page.goto("/")
    expect(page.get_by_role("link", name="API docs")).to_have_attribute("href", "/api/docs")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_test_id("auth-submit").click()
    expect(page.get_by_test_id("auth-error")).to_have_text("Invalid email or password")
    user = browser.sign_up()

    page.get_by_test_id("model").select_option(DEEPSEEK)
    description = page.get_by_test_id("model-description")
    expect(description.locator("strong")).to_contain_text("DeepSeek R1 Distill")
    assert page.locator("optgroup[label=qwen] option").count() == 2
    chat_id = browser.new_chat(OLLAMA)

    box = page.get_by_test_id("input")
    box.fill("Show me Markdown")
    box.press("Shift+Enter")
    box.type(directive(pieces=MARKDOWN_REPLY, delay_ms=40))
    assert box.input_value().count("\n") == 1  # Shift+Enter added a line, sent nothing
    box.press("Enter")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("stop")).to_be_visible()  # while it streams
    browser.wait_finished("stop")

    reply = browser.last_reply().get_by_test_id("reply")
    expect(reply.locator("strong")).to_have_text("short")
    expect(reply.locator("ol > li")).to_have_count(3)
    expect(reply.locator("pre code")).to_contain_text('print("hello from neptun")')
    expect(reply.locator("table td").first).to_have_text("rwkv-6-world")
    usage = browser.last_reply().get_by_test_id("usage")
    assert re.search(r"\d+ in · \d+ out tokens", usage.inner_text())
    user_bubble = page.locator("[data-test=message][data-role=user]")
    assert user_bubble.inner_text().startswith("Show me Markdown\nHi [[fake")

    stored = browser.stored(user["id"], chat_id)
    assert [(m["actor"], m["status"]) for m in stored] == [("user", "done"), ("assistant", "done")]
    assert stored[1]["message"] == "".join(MARKDOWN_REPLY)
    assert stored[1]["finish_reason"] == "stop"
    # The chat took its first message as its name, and is first in the list.
    expect(page.locator("[data-test=chat-list] li").first).to_contain_text("Show me Markdown")
    docs_screenshot(browser, "web-chat.png")


def test_reasoning_is_collapsed_and_history_reopens(open_browser):
    """DeepSeek-R1's thinking is in a closed "Reasoning" section, the answer below it; after a
    reload the chat opens from the address with its stored history."""
    browser = open_browser()
    page = browser.page
    browser.sign_up()
    browser.new_chat(DEEPSEEK)
    browser.send(directive(pieces=["Let me think", "</think>", "The **answer**"]))
    browser.wait_finished("stop")
    reasoning = browser.last_reply().get_by_test_id("reasoning")
    expect(reasoning).to_be_visible()
    assert reasoning.get_attribute("open") is None
    expect(reasoning.locator(".markdown")).to_be_hidden()
    reasoning.locator("summary").click()
    expect(reasoning.locator(".markdown")).to_have_text("Let me think")
    expect(browser.last_reply().get_by_test_id("reply")).to_have_text("The answer")

    page.reload()
    expect(page.locator("[data-test=message]")).to_have_count(2)
    expect(browser.last_reply().get_by_test_id("usage")).to_contain_text("stop")


def test_reload_mid_reply_resumes_and_completes_once(open_browser):
    """Reloading while a reply streams reattaches to it (resumeStream): the stored text shows
    at once, the stream picks up, and the reply completes exactly once, in one bubble."""
    browser = open_browser()
    page = browser.page
    user = browser.sign_up()
    chat_id = browser.new_chat()
    browser.send(directive(tokens=150, delay_ms=30))
    browser.wait_reply_text(40)
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(f"{request.method} {request.url}"))
    page.reload()
    expect(browser.replies()).to_have_count(1)
    expect(page.get_by_test_id("stop")).to_be_visible()  # the page knows a reply is running
    browser.wait_finished("stop")
    expect(browser.replies()).to_have_count(1)
    expect(browser.last_reply().get_by_test_id("reply")).to_have_text(expected_text(150))
    assert any(seen.startswith("GET ") and seen.endswith(f"/api/ai/{OLLAMA}/chat/{chat_id}/stream")
               for seen in requests_seen), requests_seen
    assert not any(seen.startswith("POST ") and "/api/ai/" in seen for seen in requests_seen)
    stored = browser.stored(user["id"], chat_id)
    assert [m["actor"] for m in stored] == ["user", "assistant"]
    assert browser.last_reply().get_attribute("data-message-id") == f"msg-{stored[1]['id']}"
    assert (stored[1]["message"], stored[1]["status"]) == (expected_text(150), "done")


def test_stop_mid_reply_stores_it_stopped(open_browser):
    """The Stop button calls the stop route: the reply ends "stopped", its text so far kept,
    and is stored so."""
    browser = open_browser()
    page = browser.page
    user = browser.sign_up()
    chat_id = browser.new_chat()
    browser.send(directive(tokens=300, delay_ms=30))
    browser.wait_reply_text(30)
    with page.expect_request(f"**/api/ai/{OLLAMA}/chat/{chat_id}/stop") as stop_request:
        page.get_by_test_id("stop").click()
    assert stop_request.value.method == "POST"
    browser.wait_finished("stopped")
    expect(page.get_by_test_id("send")).to_be_visible()
    shown = browser.last_reply().get_by_test_id("reply").inner_text()
    assert 30 <= len(shown) < len(expected_text(300))
    assert expected_text(300).startswith(shown)
    deadline = time.monotonic() + 10
    while (stored := browser.stored(user["id"], chat_id)[-1])["status"] != "done":
        assert time.monotonic() < deadline, stored
        time.sleep(0.2)
    assert stored["finish_reason"] == "stopped"
    assert stored["message"] == shown


def test_a_mid_stream_error_is_shown_and_the_text_kept(open_browser):
    """An upstream failure mid-reply: the error is shown under the reply, the text received
    before it stays, the stored reply is "error"; Regenerate then replaces the reply."""
    browser = open_browser()
    page = browser.page
    user = browser.sign_up()
    chat_id = browser.new_chat()
    browser.send(directive(fault="error_event", at=2))
    expect(page.get_by_test_id("chat-error")).to_contain_text("The reply failed.")
    expect(browser.last_reply().get_by_test_id("reply")).to_have_text(expected_text(2))
    stored = browser.stored(user["id"], chat_id)
    assert (stored[-1]["message"], stored[-1]["finish_reason"]) == (expected_text(2), "error")
    browser.screenshot("error.png")

    # Regenerate: the same turn generated again (the fake fails it again the same way), in
    # place of the reply: still one reply, stored anew.
    with page.expect_response(f"**/api/ai/{OLLAMA}/chat") as response:
        page.get_by_test_id("regenerate").click()
    assert json.loads(response.value.request.post_data)["trigger"] == "regenerate-message"
    expect(page.get_by_test_id("chat-error")).to_contain_text("The reply failed.")
    expect(browser.replies()).to_have_count(1)
    expect(browser.last_reply().get_by_test_id("reply")).to_have_text(expected_text(2))
    again = browser.stored(user["id"], chat_id)
    assert [m["actor"] for m in again] == ["user", "assistant"]
    assert again[-1]["created_at"] > stored[-1]["created_at"]  # a new reply, not a replay


def test_untrusted_model_output_renders_inert(open_browser):
    """HTML and javascript: links in a reply are shown as text or removed: no script runs, no
    dialog opens, no event handler or javascript: link is in the page, even when clicked."""
    browser = open_browser()
    page = browser.page
    browser.sign_up()
    browser.new_chat()
    pieces = ['Look: <img src=x onerror="window.__xss=1;alert(1)">\n\n',
              "[click me](javascript:window.__xss=2;alert(2))\n\n",
              '<a href="javascript:alert(3)" onclick="alert(4)">raw link</a>\n\n',
              "<script>window.__xss=5;alert(5)</script>\n\n",
              "[a real link](https://example.com/docs) and <svg onload=alert(6)></svg>"]
    browser.send(directive(pieces=pieces))
    browser.wait_finished("stop")
    reply = browser.last_reply().get_by_test_id("reply")
    assert reply.locator("img, script, svg, iframe").count() == 0
    assert page.locator("[onerror], [onclick], [onload]").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0
    expect(reply).to_contain_text('<img src=x onerror="window.__xss=1;alert(1)">')  # as text
    real = reply.get_by_role("link", name="a real link")
    expect(real).to_have_attribute("href", "https://example.com/docs")
    expect(real).to_have_attribute("rel", "noopener noreferrer nofollow")
    reply.get_by_text("click me").click()
    reply.get_by_text("raw link").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    # the fixture asserts that no dialog opened and no script was refused by the CSP


def test_playground_stores_nothing(open_browser):
    """The playground toggle sends is_playground=true: a reply streams, no chat is stored."""
    browser = open_browser()
    page = browser.page
    user = browser.sign_up()
    page.get_by_test_id("playground").check()
    expect(page.get_by_test_id("chat-title")).to_have_text("Playground")
    with page.expect_request(re.compile(r"/api/ai/.+/chat\?is_playground=true")) as request:
        browser.send(directive(pieces=["Nothing ", "stored"]))
    assert json.loads(request.value.post_data)["id"] == "playground"
    browser.wait_finished("stop")
    expect(browser.last_reply().get_by_test_id("reply")).to_have_text("Nothing stored")
    assert browser.get(f"/api/users/{user['id']}/chats")["chats"] == []


@pytest.fixture(scope="module")
def server_without_huggingface(upstream, migrated):
    """A second app whose Hugging Face provider has no credentials (503 for its models)."""
    env = {key: value for key, value in upstream_env(upstream.base_url).items()
           if not key.startswith("HUGGINGFACE_")}
    process = Gunicorn({"DATABASE_URL": migrated, **env, **TIMEOUT_ENV})
    yield process
    process.stop()


def test_an_unconfigured_provider_is_a_note(open_browser, server_without_huggingface):
    """A 503 "not configured" is a note naming the provider, not a broken page."""
    browser = open_browser(base_url=server_without_huggingface.base_url)
    page = browser.page
    browser.sign_up()
    browser.new_chat("qwen/Qwen2.5-72B-Instruct")
    browser.send("Hello")
    note = page.get_by_test_id("chat-error")
    expect(note).to_contain_text("This model is not available on this server.")
    expect(note).to_contain_text("Provider huggingface is not configured")
    expect(page.get_by_test_id("input")).to_be_enabled()


def test_chat_list_rename_delete_and_log_out(open_browser):
    """Chats are listed newest first; rename and delete from the list; log out, log in again."""
    browser = open_browser()
    page = browser.page
    user = browser.sign_up()
    first = browser.new_chat()
    second = browser.new_chat("cloudflare/llama-3.3-70b-instruct-fp8-fast")
    items = page.locator("[data-test=chat-list] li")
    expect(items).to_have_count(2)
    assert [int(items.nth(i).get_attribute("data-chat-id")) for i in range(2)] == [second, first]

    row = page.locator(f"[data-test=chat-list] li[data-chat-id='{first}']")
    row.hover()
    row.get_by_test_id("rename").click()
    row.get_by_test_id("rename-input").fill("Renamed chat")
    row.get_by_test_id("rename-input").press("Enter")
    expect(row).to_contain_text("Renamed chat")
    page.locator(f"[data-test=chat-list] li[data-chat-id='{second}']").hover()
    page.locator(f"[data-test=chat-list] li[data-chat-id='{second}'] [data-test=delete]").click()
    page.get_by_test_id("confirm-delete").click()
    expect(items).to_have_count(1)
    names = [c["name"] for c in browser.get(f"/api/users/{user['id']}/chats")["chats"]]
    assert names == ["Renamed chat"]

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("auth-form")).to_be_visible()
    assert browser.context.request.get("/api/auth/session").status == 401


def test_a_phone_sized_screen_shows_the_chat_without_horizontal_scrolling(open_browser):
    """On a 390 px wide screen the chat list is a drawer; a reply with a long word, a wide code
    block and a table fits the width (no horizontal scrolling of the page)."""
    browser = open_browser(viewport=PHONE)
    page = browser.page
    browser.sign_up()
    expect(page.locator(".sidebar")).not_to_be_in_viewport()
    browser.new_chat()
    expect(page.locator(".sidebar")).not_to_be_in_viewport()
    browser.send(directive(pieces=[
        "A long word: " + "x" * 120 + "\n\n",
        "```\n" + "wide_code_line = " + "1 + " * 60 + "1\n```\n\n", *MARKDOWN_REPLY[:2]]))
    browser.wait_finished("stop")
    widths = page.evaluate("""() => ({doc: document.documentElement.scrollWidth,
                                      body: document.body.scrollWidth, view: window.innerWidth})""")
    assert widths["doc"] <= widths["view"] and widths["body"] <= widths["view"], widths
    box = page.get_by_test_id("input").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    docs_screenshot(browser, "web-chat-phone.png")


def test_without_a_build_the_page_is_a_json_503_and_the_api_works(app_factory, tmp_path):
    """No web/dist: / is a 503 in the error shape saying how to build; the API still answers."""
    client = app_factory(NEPTUN_WEB_DIST=str(tmp_path / "missing")).test_client()
    response = client.get("/")
    assert response.status_code == 503
    body = response.get_json()
    assert body["statusCode"] == 503
    assert "cd web && npm ci && npm run build" in body["statusMessage"]
    assert client.get("/api/models").status_code == 200
    assert client.get("/assets/index.js").status_code == 404
