"""The README's screenshots of the chat page, taken from the real page: the app under gunicorn
+ gevent (a throwaway SQLite database) and the fake upstream, driven in Chromium.

    .venv/bin/python -m tests.e2e.docs_screenshots        # writes docs/web-chat*.png

The fake upstream is steered by a directive in the system prompt (NEPTUN_SYSTEM_PROMPT), which
Hugging Face models receive in their prompt, so the questions on the page read naturally.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from flask_migrate import upgrade
from playwright.sync_api import expect, sync_playwright

from neptun_flask import create_app
from tests.conftest import make_test_config
from tests.fakes.upstream import FakeUpstream

from .conftest import TIMEOUT_ENV
from .server import API_KEY, Gunicorn, upstream_env
from .test_web_page import CHROMIUM, CHROMIUM_ARGS, DEEPSEEK, DESKTOP, DIST, DOCS, PHONE, WEB

THINKING = ("The user wants to stream a reply into a Vue page. The service speaks the UI "
            "message stream, so the AI SDK's Chat class reads it directly.")
ANSWER = [
    "Use the AI SDK's `Chat` with a `DefaultChatTransport` pointed at a chat route:\n\n",
    "```js\nconst chat = new Chat({\n  id: String(chatId),\n",
    "  transport: new DefaultChatTransport({ api: '/api/ai/ollama/rwkv-6-world/chat' }),\n})\n",
    "await chat.sendMessage({ text: 'Hello!' })\n```\n\n",
    "Then:\n\n1. **Render** `chat.messages` as they grow\n",
    "2. **Resume** after a reload with `chat.resumeStream()`\n",
    "3. **Stop** with the stop route\n",
]


def main() -> None:
    if not (DIST / "index.html").is_file():
        subprocess.run([shutil.which("npm"), "ci"], cwd=WEB, check=True)
        subprocess.run([shutil.which("npm"), "run", "build"], cwd=WEB, check=True)
    folder = Path(tempfile.mkdtemp(prefix="neptun-shots-"))
    database = f"sqlite:///{folder / 'shots.sqlite3'}"
    app = create_app(make_test_config(database))
    with app.app_context():
        upgrade()
    scenario = json.dumps({"pieces": [THINKING, "</think>", *ANSWER], "delay_ms": 15})
    upstream = FakeUpstream(tokens=5, api_key=API_KEY).start()
    server = Gunicorn({"DATABASE_URL": database, **upstream_env(upstream.base_url),
                       **TIMEOUT_ENV, "NEPTUN_SYSTEM_PROMPT": f"[[fake {scenario}]]"})
    try:
        with sync_playwright() as playwright:
            playwright.selectors.set_test_id_attribute("data-test")
            for name, viewport in (("web-chat.png", DESKTOP), ("web-chat-phone.png", PHONE)):
                context = playwright.chromium.launch_persistent_context(
                    str(folder / name), executable_path=CHROMIUM, headless=True,
                    args=CHROMIUM_ARGS, viewport=viewport, base_url=server.base_url)
                page = context.new_page()
                shoot(page, phone=viewport is PHONE)
                DOCS.mkdir(exist_ok=True)
                page.screenshot(path=str(DOCS / name))
                context.close()
                print(f"wrote {DOCS / name}")
    finally:
        server.stop()
        upstream.stop()
        shutil.rmtree(folder, ignore_errors=True)


def shoot(page, phone: bool) -> None:
    """Sign up, a few chats, one question answered."""
    page.goto("/")
    page.get_by_test_id("mode-signup").click()
    page.get_by_label("Email").fill("ada.phone@example.com" if phone else "ada@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_test_id("auth-submit").click()
    expect(page.get_by_test_id("logout")).to_be_visible()
    user = page.request.get("/api/auth/session").json()["user"]
    for model, name in (("qwen/Qwen2.5-Coder-32B-Instruct", "Regex for ISO dates"),
                        ("ollama/rwkv-6-world", "Trip ideas for Lisbon")):
        page.request.post(f"/api/users/{user['id']}/chats", data={"model": model, "name": name})
    page.reload()
    if phone:
        page.get_by_role("button", name="Chats").click()
    page.get_by_test_id("model").select_option(DEEPSEEK)
    page.get_by_test_id("new-chat").click()
    box = page.get_by_test_id("input")
    box.fill("How do I stream a reply into my Vue page?")
    box.press("Enter")
    expect(page.locator("[data-role=assistant] [data-test=usage]")).to_contain_text("stop")
    page.mouse.move(0, 0)


if __name__ == "__main__":
    main()
