"""Tests of the fake OpenAI-compatible server, driven through the official ``openai`` SDK."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llm_cache.testing import fake_openai
from llm_cache.testing.fake_openai import JOKES, FakeOpenAIServer

API_KEY = "sk-test-secret-123"
CHAT_MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: FakeOpenAIServer) -> Iterator[None]:
    # One server per module is cheap; per-test state is reset instead.
    server.reset()
    server.latency = 0.0
    yield


@pytest.fixture()
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as c:
        yield c


@pytest.fixture()
async def aclient(server: FakeOpenAIServer) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as c:
        yield c


def chat(client: openai.OpenAI, content: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def raw_request(
    server: FakeOpenAIServer, path: str, data: bytes | None = None, method: str = "POST"
) -> tuple[int, dict]:
    """Send a raw HTTP request (bypassing the SDK) and return (status, JSON body)."""
    req = urllib.request.Request(
        server.base_url.removesuffix("/v1") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ------------------------------------------------------------------ completions


def test_completion_single_prompt(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    resp = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="The capital of France is"
    )
    assert resp.object == "text_completion"
    assert resp.id and resp.created and resp.model == "gpt-3.5-turbo-instruct"
    [choice] = resp.choices
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.text.startswith("Answer ") and "The capital of France is" in choice.text
    assert resp.usage.prompt_tokens == 5
    assert resp.usage.completion_tokens == len(choice.text.split())
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_completion_list_prompt_is_prompt_major(client: openai.OpenAI) -> None:
    prompts = ["first prompt here", "second prompt there"]
    resp = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompts, n=2, best_of=2)
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert [prompts[0] in c.text for c in resp.choices] == [True, True, False, False]
    assert [prompts[1] in c.text for c in resp.choices] == [False, False, True, True]
    texts = [c.text for c in resp.choices]
    assert len(set(texts)) == 4  # choice indexes differ
    # Choice j of a prompt equals the single-prompt answer for index j: same text, same request.
    single = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompts[1], n=2)
    assert [c.text for c in single.choices] == texts[2:]


def test_completion_is_deterministic_and_sensitive(client: openai.OpenAI) -> None:
    def text(**kw: Any) -> str:
        args = {
            "model": "gpt-3.5-turbo-instruct",
            "prompt": "hello world",
            "temperature": 0.7,
            "seed": 1,
            **kw,
        }
        return client.completions.create(**args).choices[0].text

    base = text()
    assert text() == base
    assert text(temperature=0.7, seed=1, logit_bias={"50256": -100}) == base
    for changed in (
        text(seed=2),
        text(temperature=0.2),
        text(model="other-model"),
        text(prompt="goodbye world"),
    ):
        assert changed != base


def test_completion_max_tokens_and_stop(client: openai.OpenAI) -> None:
    prompt = "one two three four five six"
    full = client.completions.create(model="m", prompt=prompt).choices[0].text
    cut = client.completions.create(model="m", prompt=prompt, max_tokens=3).choices[0]
    assert cut.text == " ".join(full.split()[:3]) and cut.finish_reason == "length"
    stopped = client.completions.create(model="m", prompt=prompt, stop=["three", "two"]).choices[0]
    assert stopped.text == full[: full.index("two")] and stopped.finish_reason == "stop"
    assert (
        client.completions.create(model="m", prompt=prompt, stop="four").choices[0].text
        == full[: full.index("four")]
    )


def test_jokes_and_summaries_are_readable(client: openai.OpenAI) -> None:
    jokes = client.completions.create(model="m", prompt="Tell me a joke about cats", n=3).choices
    assert all(c.text in JOKES for c in jokes)
    assert len({c.text for c in jokes}) == 3
    article = (
        "The river flooded the old town on Monday. Nobody was hurt. Repairs will take a month."
    )
    summary = chat(client, f"Summarize the following text: {article}").choices[0].message.content
    assert "The river flooded the old town on Monday. Nobody was hurt." in summary
    assert "Repairs" not in summary


def test_completion_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": "m", "prompt": ["alpha beta gamma", "delta"], "n": 2}
    full = client.completions.create(**kwargs)
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    usage = None
    for chunk in client.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    ):
        assert chunk.object == "text_completion"
        usage = chunk.usage or usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            finishes[c.index] = c.finish_reason or finishes.get(c.index)
    assert texts == {c.index: c.text for c in full.choices}
    assert finishes == {c.index: c.finish_reason for c in full.choices}
    assert usage == full.usage


# ------------------------------------------------------------------------- chat


def test_chat_completion(client: openai.OpenAI) -> None:
    resp = chat(client, "What is a cache?", max_completion_tokens=50, stop=["zzz"])
    assert resp.object == "chat.completion"
    [choice] = resp.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert "What is a cache?" in choice.message.content
    assert resp.usage.prompt_tokens == 4
    assert chat(client, "What is a cache?").choices[0].message.content == choice.message.content
    assert chat(client, "What is a cache?", max_tokens=2).choices[0].message.content == " ".join(
        choice.message.content.split()[:2]
    )
    many = chat(client, "What is a cache?", n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.choices[0].message.content == choice.message.content
    assert len({c.message.content for c in many.choices}) == 3


def test_chat_uses_conversation_for_determinism(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    two = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
    )
    assert one.choices[0].message.content != two.choices[0].message.content
    assert "hi" in two.choices[0].message.content


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def test_chat_tool_calls(client: openai.OpenAI) -> None:
    resp = chat(
        client, "Weather in Paris?", tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required"
    )
    [choice] = resp.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert (
        call.type == "function"
        and call.id.startswith("call_")
        and call.function.name == "get_weather"
    )
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit", "days"}
    assert args["unit"] in ("celsius", "fahrenheit") and isinstance(args["days"], int)
    again = chat(
        client, "Weather in Paris?", tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required"
    )
    assert again.choices[0].message.tool_calls[0].function.arguments == call.function.arguments

    named = chat(
        client,
        "What time is it?",
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert named.choices[0].message.tool_calls[0].function.name == "get_time"
    assert json.loads(named.choices[0].message.tool_calls[0].function.arguments) == {}

    auto = chat(client, "Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto")
    assert auto.choices[0].finish_reason == "stop" and auto.choices[0].message.content


def test_chat_tool_call_streaming(client: openai.OpenAI) -> None:
    full = chat(client, "Weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="required")
    calls: list[Any] = []
    finish = None
    for chunk in chat(
        client, "Weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="required", stream=True
    ):
        for c in chunk.choices:
            calls.extend(c.delta.tool_calls or [])
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    [call] = calls
    assert call.function.arguments == full.choices[0].message.tool_calls[0].function.arguments


def test_chat_json_response_format(client: openai.OpenAI) -> None:
    resp = chat(client, "Give me JSON about caching", response_format={"type": "json_object"})
    data = json.loads(resp.choices[0].message.content)
    assert isinstance(data, dict) and data

    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "score": {"type": "number"}},
    }
    resp = chat(
        client,
        "Rate caching",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rating", "schema": schema},
        },
    )
    data = json.loads(resp.choices[0].message.content)
    assert set(data) == {"title", "score"} and isinstance(data["score"], float)


def _collect_chat_stream(chunks: list[Any]) -> tuple[str, str | None, Any]:
    text, finish, usage = "", None, None
    for i, chunk in enumerate(chunks):
        assert chunk.object == "chat.completion.chunk"
        usage = chunk.usage or usage
        for c in chunk.choices:
            if i == 0:
                assert c.delta.role == "assistant"
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish, usage


def test_chat_streaming_sync(client: openai.OpenAI) -> None:
    prompt = "Explain streaming of server sent events in a few words please"
    full = chat(client, prompt)
    chunks = list(chat(client, prompt, stream=True, stream_options={"include_usage": True}))
    text, finish, usage = _collect_chat_stream(chunks)
    assert text == full.choices[0].message.content
    assert finish == "stop"
    assert chunks[-1].choices == [] and usage == full.usage
    assert len(chunks) > 4  # role, several words, finish, usage


def test_chat_streaming_without_usage(client: openai.OpenAI) -> None:
    chunks = list(chat(client, "short one", stream=True))
    text, finish, usage = _collect_chat_stream(chunks)
    assert text == chat(client, "short one").choices[0].message.content
    assert finish == "stop" and usage is None


async def test_chat_async_and_async_streaming(aclient: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me a joke"}]
    full = await aclient.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert full.choices[0].message.content in JOKES
    stream = await aclient.chat.completions.create(model=CHAT_MODEL, messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    text, finish, _ = _collect_chat_stream(chunks)
    assert text == full.choices[0].message.content and finish == "stop"


async def test_async_concurrent_requests(
    aclient: openai.AsyncOpenAI, server: FakeOpenAIServer
) -> None:
    import asyncio

    server.latency = 0.2
    started = time.perf_counter()
    results = await asyncio.gather(
        *(aclient.completions.create(model="m", prompt=f"question {i}") for i in range(20))
    )
    elapsed = time.perf_counter() - started
    assert [f"question {i}" in r.choices[0].text for i, r in enumerate(results)] == [True] * 20
    assert server.request_count == 20
    assert elapsed < 2.0  # served concurrently, not 20 x 0.2 s in sequence


# ------------------------------------------------------------------- embeddings


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_shape_norm_determinism(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    texts = [
        "What is the capital of France?",
        "what is the capital of france",
        "How do I bake bread?",
    ]
    resp = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert resp.object == "list" and [d.index for d in resp.data] == [0, 1, 2]
    vectors = [d.embedding for d in resp.data]
    assert all(len(v) == server.embedding_dim for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5) for v in vectors)
    assert resp.usage.prompt_tokens == sum(len(t.split()) for t in texts)
    assert (
        client.embeddings.create(model="text-embedding-3-small", input=texts[0]).data[0].embedding
        == vectors[0]
    )
    # Texts sharing words are closer than unrelated texts, and not identical.
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    assert vectors[0] != vectors[1]


def test_embeddings_sdk_sends_base64_by_default(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    default = (
        client.embeddings.create(model="text-embedding-3-small", input="hello there")
        .data[0]
        .embedding
    )
    assert server.requests[-1]["body"]["encoding_format"] == "base64"
    explicit = client.embeddings.create(
        model="text-embedding-3-small", input="hello there", encoding_format="float"
    )
    assert explicit.data[0].embedding == default  # both carry the same float32 values
    raw = client.embeddings.create(
        model="text-embedding-3-small", input="hello there", encoding_format="base64"
    )
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    decoded = list(struct.unpack(f"<{server.embedding_dim}f", base64.b64decode(encoded)))
    assert decoded == default


def test_embeddings_dimensions_and_token_input(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embedding-3-small", input="abc", dimensions=16)
    assert len(resp.data[0].embedding) == 16
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]])


# ----------------------------------------------------------- models and errors


def test_models_list_not_counted(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    ids = [m.id for m in client.models.list()]
    assert CHAT_MODEL in ids and "text-embedding-3-small" in ids
    assert server.request_count == 0


def test_unknown_path_and_malformed_json(server: FakeOpenAIServer) -> None:
    status, body = raw_request(server, "/v1/nope", b"{}")
    assert status == 404 and set(body["error"]) >= {"message", "type", "code"}
    status, body = raw_request(server, "/v1/unknown", method="GET")
    assert status == 404
    status, body = raw_request(server, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = raw_request(server, "/v1/chat/completions", b'{"model": "m"}')
    assert status == 400 and body["error"]["param"] == "messages"


def test_not_found_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.get("/does-not-exist", cast_to=object)


def test_fail_next(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.fail_next()
    with pytest.raises(openai.InternalServerError) as info:
        chat(client, "hello")
    assert info.value.status_code == 500
    assert info.value.body["message"] == "injected failure"
    assert chat(client, "hello").choices[0].message.content  # only the next request failed

    server.fail_next(status=429, count=2, message="slow down")
    for _ in range(2):
        with pytest.raises(openai.RateLimitError, match="slow down"):
            client.embeddings.create(model="text-embedding-3-small", input="x")
    server.fail_next(503)
    with pytest.raises(openai.APIStatusError) as stream_info:
        chat(client, "hello", stream=True)
    assert stream_info.value.status_code == 503
    assert server.request_count == 5


def test_fail_next_with_sdk_retries(server: FakeOpenAIServer) -> None:
    # The injected error carries a tiny retry-after-ms, so SDK retries stay fast.
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=2) as retrying:
        server.fail_next(count=2)
        started = time.perf_counter()
        assert retrying.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        ).choices
        assert time.perf_counter() - started < 1.0
    assert server.request_count == 3
    assert [r["headers"]["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]


# ------------------------------------------------------ latency and bookkeeping


def test_latency_is_honoured(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    chat(client, "warm up the connection")
    server.latency = 0.3
    started = time.perf_counter()
    chat(client, "slow please")
    assert time.perf_counter() - started >= 0.3
    server.latency = 0.0
    started = time.perf_counter()
    client.models.list()
    assert time.perf_counter() - started < 0.3  # /v1/models is not a model endpoint


def test_request_count_log_and_reset(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    chat(client, "one")
    client.completions.create(model="m", prompt="two")
    client.embeddings.create(model="e", input="three")
    assert server.request_count == 3
    log = server.requests
    assert [r["path"] for r in log] == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    assert log[0]["body"]["messages"] == [{"role": "user", "content": "one"}]
    assert log[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert all(name == name.lower() for name in log[0]["headers"])
    log.clear()  # a copy: the server's log is untouched
    assert len(server.requests) == 3
    server.fail_next()
    server.reset()
    assert server.request_count == 0 and server.requests == []
    assert chat(client, "after reset").choices  # reset also dropped the pending failure


def test_api_key_not_leaked_in_responses(server: FakeOpenAIServer) -> None:
    req = urllib.request.Request(
        server.base_url + "/nope",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert API_KEY not in info.value.read().decode()
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as c:
        resp = c.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        assert API_KEY not in resp.http_response.text
        assert all(API_KEY not in v for v in resp.headers.values())


def test_ids_are_unique_per_request(client: openai.OpenAI) -> None:
    first, second = chat(client, "same"), chat(client, "same")
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id != second.id


def test_many_threads_with_keep_alive(server: FakeOpenAIServer) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as c:
                for j in range(5):
                    assert (
                        f"t{i} r{j}"
                        in c.completions.create(model="m", prompt=f"t{i} r{j}").choices[0].text
                    )
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.request_count == 80


def test_start_stop_and_base_url(capfd: pytest.CaptureFixture[str]) -> None:
    srv = FakeOpenAIServer(latency=0.0)
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    assert srv.start() is srv
    assert srv.start() is srv  # starting twice is harmless
    assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
    with openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as c:
        chat(c, "hello")  # leaves a keep-alive connection open across stop()
        started = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - started < 2.0
        with pytest.raises(openai.APIConnectionError):
            chat(c, "hello again")
    srv.stop()  # idempotent
    out, err = capfd.readouterr()
    assert err == "" and out == ""  # the server logs nothing


def _run_module_main(*args: str, before_stop: Callable[[str], None], stop: int = signal.SIGINT) -> tuple[int, str]:
    """Start ``python -m llm_cache.testing.fake_openai --port 0 ARGS``, call
    ``before_stop(its base URL)``, send ``stop``; its exit status and stderr."""
    src = Path(fake_openai.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_cache.testing.fake_openai", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "Fake OpenAI server at" in line
        before_stop(line.split(" at ", 1)[1].split()[0])
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=120)  # a bound that says "did not hang", not a speed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_module_main_stops_on_a_signal_sent_at_once(stop: signal.Signals) -> None:
    """A signal sent the moment the server announces itself (or, for SIGINT, delivered to
    any of its threads) stops it cleanly: no traceback, no hang, exit status 0."""
    assert _run_module_main(before_stop=lambda base_url: None, stop=stop) == (0, "")


def test_module_main_serves_until_interrupted() -> None:
    def ping(base_url: str) -> None:
        with openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0) as c:
            assert "ping" in c.completions.create(model="m", prompt="ping").choices[0].text

    assert _run_module_main("--latency", "0.01", before_stop=ping) == (0, "")
