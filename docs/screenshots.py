"""Regenerate the dashboard screenshots in docs/images/ (shown in README.md and docs/dashboard.md).

    python docs/screenshots.py            # needs chromium (Debian) and playwright (PyPI)

Starts the built-in OpenAI-compatible test server as the upstream and a caching proxy in
semantic mode on a temporary SQLite file, sends it an afternoon's worth of traffic (a cache
warming up, two tenants), then opens each dashboard page in headless Chromium. Everything
runs on loopback; nothing is downloaded.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import openai

from llm_cache.proxy import ProxyServer, create_app
from llm_cache.semantic.cache import SemanticCache
from llm_cache.testing.browser import chromium, missing
from llm_cache.testing.fake_openai import FakeOpenAIServer, ToyEmbeddings

OUT = Path(__file__).resolve().parent / "images"
KEY = "sk-docs-team"
QUESTIONS = [
    "What is the capital of France?",
    "Summarise the plot of Hamlet in two sentences",
    "Write a haiku about the sea",
    "Explain what a hash table is",
    "How do I reverse a list in Python?",
    "Translate 'good morning' into Spanish",
    "What causes the seasons on Earth?",
    "Give me three names for a grey cat",
    "What is the boiling point of water at altitude?",
    "Explain recursion to a five year old",
    "<script>alert('prompts are hostile input')</script> render me",
    "What is a good name for a bakery?",
    "List the planets in order from the Sun",
    "How many minutes are in a week?",
    "What is the difference between TCP and UDP?",
    "Suggest a title for a talk about caching",
    "What rhymes with orange?",
    "How do vaccines work?",
    "Convert 30 degrees Celsius to Fahrenheit",
    "Write a limerick about a programmer",
]
REPHRASED = [  # (a rephrasing, the question it means)
    ("what is the capital of france", 0),
    ("write a haiku about the sea please", 2),
    ("how do i reverse a list in python", 4),
    ("explain what hash tables are", 3),
    ("summarise the plot of hamlet in 2 sentences", 1),
]
PAGES = {
    "dashboard-overview.png": "/dashboard",
    "dashboard-entries.png": "/dashboard/entries",
    "dashboard-entry.png": None,  # the most-hit entry, found on the overview
    "dashboard-semantic.png": "/dashboard/semantic",
}


def model_of(index: int) -> str:
    return "gpt-4o" if index % 3 == 0 else "gpt-4o-mini"


def ask(client: openai.OpenAI, text: str, model: str = "gpt-4o-mini") -> None:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def traffic(server: ProxyServer) -> None:
    """A cache warming up: new questions get rarer, repeats commoner. One counter sample per
    round, stamped 10 s apart as the proxy's sampler would take them (the rounds run faster)."""
    import random
    import time

    rng = random.Random(7)
    team = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    other = openai.OpenAI(base_url=server.base_url, api_key="sk-docs-other", max_retries=0)
    dashboard = server.app.state.dashboard
    rounds = 40
    start = time.time() - rounds * dashboard.traffic.interval
    asked = 0
    for round_ in range(rounds):
        for turn in range(5):
            if turn == 0 and asked < len(QUESTIONS) and rng.random() < 0.95 - round_ * 0.01:
                index = asked
                asked += 1
            else:  # popular questions come back most (a Zipf-like pick)
                index = min(int(rng.paretovariate(1.2)) - 1, max(asked - 1, 0))
            ask(team, QUESTIONS[index], model_of(index))
        if round_ % 7 == 6:
            text, meant = REPHRASED[(round_ // 7) % len(REPHRASED)]
            ask(team, text, model_of(meant))
        if round_ % 9 == 4:
            ask(other, f"This tenant's question number {round_} is not shown to the team")
        _settle(server)
        dashboard.traffic.sample(now=start + (round_ + 1) * dashboard.traffic.interval)


def _settle(server: ProxyServer) -> None:
    import time

    while server.app.proxy._flights or server.app.proxy._stores:
        time.sleep(0.01)


def shoot(server: ProxyServer, out: Path = OUT) -> list[Path]:
    """Screenshots of each dashboard page, as the team tenant sees them."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with chromium(
        viewport={"width": 1280, "height": 860},
        device_scale_factor=1,
        http_credentials={"username": "team", "password": KEY},
    ) as browser:
        page: Any = browser.new_page()
        for name, path in PAGES.items():
            if path is None:
                page.goto(server.url + "/dashboard")
                page.locator("td.prompt a").first.click()
            else:
                page.goto(server.url + path)
            page.wait_for_load_state("load")
            target = out / name
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
    return written


def main() -> int:
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with FakeOpenAIServer() as upstream, tempfile.TemporaryDirectory() as tmp:
        index = SemanticCache(ToyEmbeddings(), guards=None, threshold=0.8)
        app = create_app(upstream.base_url, f"sqlite:///{tmp}/proxy.db", semantic_cache=index)
        server = ProxyServer(app).start()
        try:
            traffic(server)
            for path in shoot(server):
                print(path)
        finally:
            server.stop()
            index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
