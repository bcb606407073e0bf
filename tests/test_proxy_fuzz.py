"""Property-based fuzzing of the proxy's ASGI app (Hypothesis), in process, in front of the
built-in upstream on loopback and a real SQLite store.

Generated and mutated bodies, headers, methods, paths and query strings; for each request:
no unhandled exception, a complete HTTP answer, no 5xx except the upstream's 502/504 (or a
504 for ``only-if-cached``), no internal-error log record. After the run: no store error
(bad input never counts as one) and a normal request is still answered.

Reproducible in CI: ``derandomize=True`` (examples follow from the test's source) and no
example database.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_cache import SQLiteCache
from llm_cache.proxy import create_app
from llm_cache.proxy.limits import ProxyLimits

EXAMPLES = 2500

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses/resp_1",
    "/v1/models",
    "/v1/models/gpt-4o",
    "/v1/files",
    "/v1/",
    "/metrics",
    "/healthz",
    "/",
]
HEADER_NAMES = [
    b"authorization",
    b"api-key",
    b"x-api-key",
    b"anthropic-version",
    b"cache-control",
    b"x-llm-cache-namespace",
    b"content-type",
    b"content-length",
    b"accept",
    b"user-agent",
    b"openai-organization",
    b"x-stainless-lang",
    b"idempotency-key",
    b"transfer-encoding",
]
GOOD_VALUES = [
    b"Bearer sk-fuzz-a",
    b"Bearer sk-fuzz-b",
    b"no-cache",
    b"no-store",
    b"only-if-cached",
    b"max-age=0",
    b"max-age=" + b"9" * 400,
    b"max-age=-1, only-if-cached",
    b"team-a",
    b"has space",
    b"application/json",
    b"0",
    b"99999999999999999999",
    b"chunked",
]

# Header values as an HTTP server can deliver them: visible ASCII, obs-text, space, tab.
# (A server strips the spaces around a value.)
_VALUE_BYTES = st.binary(max_size=40).map(
    lambda b: bytes(c if (32 <= c < 127 or c >= 128 or c == 9) else 97 for c in b).strip(b" \t")
)
header_values = st.one_of(st.sampled_from(GOOD_VALUES), _VALUE_BYTES)
header_names = st.one_of(
    st.sampled_from(HEADER_NAMES),
    st.from_regex(rb"\A[a-z0-9!#$%&'*+.^_`|~-]{1,20}\Z", fullmatch=True),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=6)

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
                "content": st.one_of(st.text(max_size=30), json_values),
            }
        ),
        max_size=3,
    ),
    json_values,
)
texts = st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10), min_size=1, max_size=3))
valid_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(
            ["gpt-4o-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small", "claude-3-5-haiku"]
        ),
        # The prompt field of every endpoint, so that most bodies are keyable somewhere.
        "messages": st.one_of(
            st.lists(
                st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=30)}),
                min_size=1,
                max_size=2,
            ),
            messages,
        ),
        "prompt": st.one_of(texts, texts, json_values),
        "input": st.one_of(texts, texts, json_values),
    },
    optional={
        "stream": st.one_of(st.booleans(), json_values),
        "stream_options": json_values,
        "n": st.one_of(st.integers(min_value=-2, max_value=4), json_values),
        "temperature": st.one_of(st.floats(allow_nan=False, allow_infinity=False), json_values),
        "max_tokens": st.one_of(st.integers(min_value=-5, max_value=50), json_values),
        "system": json_values,
        "background": st.one_of(st.booleans(), json_values),
        "instructions": json_values,
        "metadata": json_values,
        "tools": json_values,
        "user": json_values,
    },
)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, piece in edits:
        if not out:
            out.extend(piece)
            continue
        at = position % len(out)
        if kind == 0:
            out[at : at + 1] = piece  # replace one byte
        elif kind == 1:
            out[at:at] = piece  # insert
        else:
            del out[at : at + len(piece) + 1]  # delete a run
    return bytes(out)


SPECIAL_BODIES = [
    b"",
    b"null",
    b"[]",
    b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 1200 + b"]" * 1200 + b"}",
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "metadata": {"a": "\\udfff"}}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 1e999}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": 7}',
    b'{"model": "gpt-4o-mini", "messages": [], "seed": ' + b"9" * 5000 + b"}",
    b"\xff\xfe{}",
    b" " * 70_000,
]
bodies = st.one_of(
    valid_bodies.map(lambda b: json.dumps(b).encode()),
    st.tuples(
        valid_bodies.map(lambda b: json.dumps(b).encode()),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
            min_size=1,
            max_size=4,
        ),
    ).map(lambda pair: _mutate(*pair)),
    st.sampled_from(SPECIAL_BODIES),
    st.binary(max_size=200),
)
paths = st.one_of(
    st.sampled_from(PATHS[:5]),
    st.sampled_from(PATHS[:5]),
    st.sampled_from(PATHS),
    st.tuples(st.sampled_from(PATHS), st.text(alphabet="ab/?#%. é\x00\t-_~:@", max_size=12)).map(
        "".join
    ),
)


@dataclass
class Request:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: int


requests = st.builds(
    Request,
    method=st.one_of(
        st.just("POST"),
        st.just("POST"),
        st.just("POST"),
        st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        st.from_regex(r"\A[A-Z]{1,10}\Z", fullmatch=True),
    ),
    path=paths,
    query=st.one_of(st.just(b""), st.binary(max_size=12).map(lambda b: b.replace(b"#", b""))),
    headers=headers,
    body=bodies,
    chunks=st.integers(min_value=1, max_value=3),
)


async def drive(app: Any, request: Request) -> tuple[int, bytes]:
    """One request through the ASGI app, the way a server delivers it; returns (status, body)."""
    size = max(1, -(-len(request.body) // request.chunks))
    pieces = [request.body[i : i + size] for i in range(0, len(request.body), size)] or [b""]
    done = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        assert not done.is_set(), f"a message after the response ended: {message['type']}"
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode("utf-8", "replace"),
        "root_path": "",
        "query_string": request.query,
        "headers": [(b"host", b"proxy"), *request.headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8787),
    }
    await asyncio.wait_for(app(scope, receive, send), 60)
    assert sent and sent[0]["type"] == "http.response.start", sent[:1]
    assert done.is_set(), "the response never ended"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], body


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[_Errors]:
    handler = _Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.mark.slow
def test_fuzzed_requests_never_break_the_proxy(
    upstream: Any, tmp_path: Path, errors: _Errors
) -> None:
    loop = asyncio.new_event_loop()
    cache = SQLiteCache(database_path=str(tmp_path / "fuzz.db"))
    app = create_app(
        upstream.base_url,
        cache,
        limits=ProxyLimits(max_body_bytes=64 * 1024, max_upstream=10_000),
        models_ttl=1.0,
    )
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests)
    def check(request: Request) -> None:
        errors.records.clear()
        upstream_answers = dict(app.proxy.metrics.upstream_requests)
        status, body = loop.run_until_complete(drive(app, request))
        seen[status] = seen.get(status, 0) + 1
        if status >= 500:
            assert b"proxy_error" not in body, (status, body[:300], request)
            if status in (502, 504):  # the proxy's answer for an upstream failure
                error = json.loads(body)
                if error.get("type") == "error":  # Anthropic's shape: every path under /v1/messages
                    assert request.path.startswith("/v1/messages"), (error, request)
                    expected = {502: "api_error", 504: "timeout_error"}[status]
                    assert error["error"]["type"] == expected, (error, request)
                else:
                    code = error["error"]["code"]
                    assert code.startswith("upstream_") or code == "only_if_cached", (code, request)
            else:  # the upstream's own answer, relayed (e.g. 501 for HEAD)
                now = app.proxy.metrics.upstream_requests
                relayed = [
                    k
                    for k, v in now.items()
                    if k[1] == str(status) and v > upstream_answers.get(k, 0)
                ]
                assert relayed, (status, body[:300], request)
        assert not errors.records, [
            (r.getMessage(), logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
            for r in errors.records
        ]

    try:
        check()
        # Still answers a normal request, and no bad input counted as a store error.
        normal = Request(
            "POST",
            "/v1/chat/completions",
            b"",
            [(b"authorization", b"Bearer sk-after"), (b"content-type", b"application/json")],
            json.dumps(
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "after the fuzz"}],
                }
            ).encode(),
            1,
        )
        status, body = loop.run_until_complete(drive(app, normal))
        assert status == 200, body
        assert cache.stats.errors == 0
        assert sum(seen.values()) >= EXAMPLES // 2
        # The run reached the interesting places, not only the 404 handler.
        assert seen.get(200, 0) > 50 and seen.get(400, 0) > 50, seen
    finally:
        loop.run_until_complete(app.proxy.aclose())
        loop.close()
        cache.close()
