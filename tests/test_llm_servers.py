"""The LLM test servers: injected faults over real HTTP, the model assembly, and a real model behind
the OpenAI API (llama-cpp-python's server) and Ollama's API (our stand-in), driven by real clients."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neuromosaic_core.testing import models
from neuromosaic_core.testing.llm_servers import (
    DROP_DECLARED_LENGTH,
    ServerStartError,
    fault_server,
    llama_cpp_missing,
    llama_openai_server,
    ollama_test_server,
)
from neuromosaic_core.testing.models import ModelUnavailable, qwen_coder_gguf

# The test client: installed by requirements-ci.txt (a dependency of the ollama client), not by the README's install.
httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install -r requirements-ci.txt)")

MODEL_NAME = "qwen2.5-coder:0.5b"
SHORT = {"num_predict": 16, "seed": 1, "temperature": 0}


# ------------------------------------------------------------------------------------------------
# Fault modes


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_refuse_is_a_connect_error() -> None:
    with fault_server("refuse") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/api/tags", timeout=5)
        assert srv.requests == 0


def test_hang_times_out_and_close_releases_the_handler() -> None:
    before = threading.active_count()
    started = time.monotonic()
    with fault_server("hang") as srv:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/v1/chat/completions", json={"x": 1}, timeout=httpx.Timeout(5, read=0.3))
        assert srv.requests == 1
    assert time.monotonic() - started < 5, "closing a hanging server must not wait for anything"
    assert threading.active_count() == before


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_error500_has_a_json_error_body(method: str) -> None:
    with fault_server("error500") as srv:
        response = httpx.request(method, srv.url + "/any/path?q=1", json={"a": 1} if method == "POST" else None, timeout=5)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()
        assert srv.requests == 1


def test_garbage_is_200_json_that_does_not_parse() -> None:
    with fault_server("garbage") as srv:
        response = httpx.post(srv.url + "/api/chat", json={}, timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            response.json()


def test_drop_closes_mid_body() -> None:
    with fault_server("drop") as srv:
        with httpx.Client(timeout=5) as client:
            with client.stream("POST", srv.url + "/v1/chat/completions", json={}) as response:
                assert response.status_code == 200
                assert response.headers["content-length"] == str(DROP_DECLARED_LENGTH)
                with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    response.read()
        assert srv.requests == 1


class _TinyHandler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps({"ok": True, "path": self.path, "echo": json.loads(body)}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def tiny_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TinyHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prefix"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_flaky_fails_twice_then_relays(tiny_backend: str) -> None:
    with fault_server("flaky", backend=tiny_backend) as srv:
        assert srv.url.endswith("/prefix"), "the backend's path prefix is kept so the URL is a drop-in replacement"
        statuses = [httpx.post(srv.url + "/call", json={"n": i}, timeout=5).status_code for i in range(2)]
        assert statuses == [500, 500]
        response = httpx.post(srv.url + "/call", json={"n": 2}, timeout=5)
        assert response.status_code == 201
        assert response.json() == {"ok": True, "path": "/prefix/call", "echo": {"n": 2}}
        assert srv.requests == 3


def test_flaky_n_fail_is_a_parameter(tiny_backend: str) -> None:
    with fault_server("flaky", backend=tiny_backend, n_fail=0) as srv:
        assert httpx.post(srv.url + "/x", json={}, timeout=5).status_code == 201


def test_fault_server_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown fault mode"):
        with fault_server("nope"):
            pass
    with pytest.raises(ValueError, match="backend"):
        with fault_server("flaky"):
            pass
    with pytest.raises(ValueError, match="backend"):
        with fault_server("error500", backend="http://127.0.0.1:1"):
            pass


def test_servers_shut_down_when_the_test_body_fails() -> None:
    names_before = _thread_names()
    urls = []
    with pytest.raises(RuntimeError, match="boom"):
        with fault_server("hang") as hang, fault_server("error500") as err:
            urls = [hang.url, err.url]
            # a connection left open, and a request left hanging, when the body fails
            sock = socket.create_connection(("127.0.0.1", int(hang.url.rsplit(":", 1)[1])))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            keep = socket.create_connection(("127.0.0.1", int(err.url.rsplit(":", 1)[1])))
            try:
                raise RuntimeError("boom")
            finally:
                sock.close()
                keep.close()
    assert _thread_names() == names_before
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


# ------------------------------------------------------------------------------------------------
# Model assembly (small fake parts: the real 491 MB file is exercised by the fixtures below)


def _fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> list[Path]:
    parts = []
    for i, data in enumerate(chunks, start=1):
        part = tmp_path / "parts" / f"part0{i}.bin"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(data)
        parts.append(part)
    monkeypatch.setattr(models, "_part_files", lambda: parts)
    monkeypatch.setenv("NEUROMOSAIC_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NEUROMOSAIC_TEST_GGUF", raising=False)
    return parts


def test_assembly_concatenates_verifies_and_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
    _fake_parts(tmp_path, monkeypatch, chunks)
    whole = b"".join(chunks)
    monkeypatch.setattr(models, "QWEN_CODER_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(models, "QWEN_CODER_SIZE", len(whole))

    path = qwen_coder_gguf()
    assert path == tmp_path / "cache" / models.QWEN_CODER_FILENAME
    assert path.read_bytes() == whole
    assert json.loads(Path(str(path) + ".verified").read_text())["size"] == len(whole)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []

    # The marker makes the next call skip both assembly and hashing.
    monkeypatch.setattr(models, "_part_files", lambda: pytest.fail("assembled again"))
    monkeypatch.setattr(models, "_sha256_of", lambda p: pytest.fail("hashed again"))
    assert qwen_coder_gguf() == path


def test_assembly_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path, monkeypatch, [b"not", b"the model"])
    monkeypatch.setattr(models, "QWEN_CODER_SIZE", 12)
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        qwen_coder_gguf()
    cache = tmp_path / "cache"
    assert list(cache.iterdir()) == [], "no partial or unverified file is left behind"


def test_a_tampered_cached_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"x" * 64, b"y" * 64]
    _fake_parts(tmp_path, monkeypatch, chunks)
    whole = b"".join(chunks)
    monkeypatch.setattr(models, "QWEN_CODER_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(models, "QWEN_CODER_SIZE", len(whole))
    path = qwen_coder_gguf()
    path.write_bytes(b"z" * len(whole))  # same size, new mtime: the marker no longer matches
    assert qwen_coder_gguf().read_bytes() == whole


def test_missing_packages_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NEUROMOSAIC_TEST_GGUF", raising=False)
    monkeypatch.setenv("NEUROMOSAIC_MODEL_CACHE", str(tmp_path))
    # One part importable (a package made here, so the test does not depend on requirements-ci.txt), one missing.
    present = tmp_path / "site" / "fake_part_1"
    (present / "data").mkdir(parents=True)
    (present / "__init__.py").write_text("")
    (present / "data" / "part01.bin").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(models, "QWEN_CODER_PACKAGES", (("fake-part-1", "fake_part_1"), ("no-such-part-7", "no_such_part_7")))
    with pytest.raises(ModelUnavailable, match="no-such-part-7") as info:
        qwen_coder_gguf()
    assert "fake-part-1" not in str(info.value).split("not installed")[0]


def test_test_gguf_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF anything")
    monkeypatch.setenv("NEUROMOSAIC_TEST_GGUF", str(other))
    assert qwen_coder_gguf() == other
    monkeypatch.setenv("NEUROMOSAIC_TEST_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelUnavailable, match="NEUROMOSAIC_TEST_GGUF"):
        qwen_coder_gguf()


# ------------------------------------------------------------------------------------------------
# A real model behind real servers


@pytest.fixture(scope="module")
def gguf() -> Path:
    started = time.perf_counter()
    try:
        path = qwen_coder_gguf()
    except ModelUnavailable as exc:
        pytest.skip(f"model unavailable: {exc}")
    print(f"qwen_coder_gguf() -> {path} in {time.perf_counter() - started:.2f} s")
    return path


def _require_llama_cpp() -> None:
    if reason := llama_cpp_missing():
        pytest.skip(reason)


def _start_or_skip(stack: contextlib.ExitStack, server: contextlib.AbstractContextManager[str], what: str) -> str:
    """Enter a model server, skipping (with the reason) when llama-cpp-python is not installed."""
    started = time.perf_counter()
    try:
        url = stack.enter_context(server)
    except ModelUnavailable as exc:
        pytest.skip(str(exc))
    print(f"{what} ready in {time.perf_counter() - started:.2f} s")
    return url


@pytest.fixture(scope="module")
def ollama_url(gguf: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        yield _start_or_skip(stack, ollama_test_server(gguf), "ollama_test_server")


@pytest.fixture(scope="module")
def openai_url(gguf: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        yield _start_or_skip(stack, llama_openai_server(gguf, n_ctx=2048, model_alias="qwen-coder"), "llama_openai_server")


@pytest.fixture(scope="module")
def ollama_client(ollama_url: str):
    ollama = pytest.importorskip("ollama")
    with ollama.Client(host=ollama_url) as client:
        yield client


MESSAGES = [{"role": "user", "content": "Write a Python function add(a, b) that returns a + b. Only code."}]


def test_ollama_chat(ollama_client) -> None:
    response = ollama_client.chat(model=MODEL_NAME, messages=MESSAGES, options=SHORT)
    assert response.done is True
    assert response.model == MODEL_NAME
    assert response.message.role == "assistant"
    assert response.message.content.strip()
    assert response.done_reason in {"stop", "length"}
    assert 0 < response.eval_count <= 16
    assert response.prompt_eval_count > 10
    assert response.total_duration > 0 and response.eval_duration > 0
    # temperature 0 and a seed: the same answer again
    again = ollama_client.chat(model=MODEL_NAME, messages=MESSAGES, options=SHORT)
    assert again.message.content == response.message.content


def test_ollama_chat_stream(ollama_client) -> None:
    parts = list(ollama_client.chat(model=MODEL_NAME, messages=MESSAGES, options=SHORT, stream=True))
    assert len(parts) >= 3
    assert all(p.done is False for p in parts[:-1]) and parts[-1].done is True
    assert parts[-1].message.content == "" and parts[-1].done_reason in {"stop", "length"}
    text = "".join(p.message.content for p in parts)
    assert text == ollama_client.chat(model=MODEL_NAME, messages=MESSAGES, options=SHORT).message.content
    assert parts[-1].eval_count == len(parts) - 1


def test_ollama_generate(ollama_client) -> None:
    response = ollama_client.generate(model=MODEL_NAME, prompt="def fib(n):", system="You write Python.", options=SHORT)
    assert response.done is True and response.response.strip()
    raw = ollama_client.generate(model=MODEL_NAME, prompt="def fib(n):", raw=True, options={**SHORT, "num_predict": 8})
    assert raw.response and raw.done_reason == "length" and 0 < raw.eval_count <= 8
    parts = list(ollama_client.generate(model=MODEL_NAME, prompt="print(", options=SHORT, stream=True))
    assert parts[-1].done is True and "".join(p.response for p in parts)


def test_ollama_list_and_misc(ollama_client, ollama_url: str) -> None:
    listed = ollama_client.list()
    assert [m.model for m in listed.models] == [MODEL_NAME]
    assert listed.models[0].details.format == "gguf" and listed.models[0].details.family == "qwen2"
    assert listed.models[0].size > 400_000_000
    assert httpx.get(ollama_url + "/", timeout=5).text == "Ollama is running"
    assert httpx.head(ollama_url + "/", timeout=5).status_code == 200
    assert "version" in httpx.get(ollama_url + "/api/version", timeout=5).json()
    assert ollama_client.show(MODEL_NAME).details.family == "qwen2"


def test_ollama_unknown_model_and_bad_requests(ollama_client, ollama_url: str) -> None:
    import ollama

    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="llama3:8b", messages=MESSAGES, options=SHORT)
    assert info.value.status_code == 404
    assert info.value.error == 'model "llama3:8b" not found, try pulling it first'
    response = httpx.post(ollama_url + "/api/chat", content=b"{not json", timeout=5)
    assert response.status_code == 400 and "error" in response.json()
    assert httpx.get(ollama_url + "/api/nothing", timeout=5).status_code == 404
    # an empty chat only "loads" the model, as in Ollama
    loaded = httpx.post(ollama_url + "/api/chat", json={"model": MODEL_NAME, "messages": [], "stream": False}, timeout=5).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"


def test_ollama_raw_http_fields(ollama_url: str) -> None:
    """The wire format, for providers that speak Ollama's API without the official client."""
    body = {"model": MODEL_NAME, "messages": MESSAGES, "options": SHORT}  # no "stream": Ollama streams by default
    with httpx.stream("POST", ollama_url + "/api/chat", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    final = lines[-1]
    assert set(final) >= {
        "model",
        "created_at",
        "message",
        "done",
        "done_reason",
        "prompt_eval_count",
        "eval_count",
        "total_duration",
        "eval_duration",
    }
    assert final["created_at"].endswith("Z")


def test_openai_chat_completion(openai_url: str) -> None:
    started = time.perf_counter()
    response = httpx.post(
        openai_url + "/chat/completions",
        json={"model": "qwen-coder", "messages": MESSAGES, "max_tokens": 32, "temperature": 0, "seed": 1},
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["choices"][0]["message"]["content"].strip()
    assert 0 < data["usage"]["completion_tokens"] <= 32
    print(f"32-token chat completion: {elapsed:.2f} s, {data['usage']}")
    models_listed = httpx.get(openai_url + "/models", timeout=10).json()
    assert [m["id"] for m in models_listed["data"]] == ["qwen-coder"]


def test_flaky_in_front_of_a_real_model(openai_url: str) -> None:
    with fault_server("flaky", backend=openai_url) as flaky:
        body = {"messages": MESSAGES, "max_tokens": 8, "temperature": 0}
        statuses = []
        for _attempt in range(5):  # a minimal retry loop: what a provider's retry policy does
            response = httpx.post(flaky.url + "/chat/completions", json=body, timeout=120)
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
        assert statuses == [500, 500, 200]
        assert response.json()["choices"][0]["message"]["content"]
        assert flaky.requests == 3


def test_a_server_that_dies_while_starting_reports_its_output(tmp_path: Path) -> None:
    _require_llama_cpp()
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    with pytest.raises(ServerStartError, match="exited with code") as info:
        with ollama_test_server(bogus, timeout=60):
            pass
    assert "last output" in str(info.value)
    with pytest.raises(ServerStartError, match="exited with code") as info:
        with llama_openai_server(bogus, timeout=60):
            pass
    assert "last output" in str(info.value)


def test_model_server_is_gone_after_a_failing_body(gguf: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    url = None
    with pytest.raises(RuntimeError, match="boom"):
        with ollama_test_server(gguf, n_ctx=512) as url:
            assert httpx.get(url + "/", timeout=5).status_code == 200
            raise RuntimeError("boom")
    assert url is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/", timeout=2)
