"""Real HTTP servers for testing LLM providers: injected faults, and a real model behind two APIs.

Every server binds 127.0.0.1 on a free port, and every helper is a context manager that shuts its
server down (threads joined, subprocess group killed) on exit, also when the test body raises::

    from neuromosaic_core.testing.llm_servers import fault_server, llama_openai_server, ollama_test_server

    with fault_server("hang") as srv:            # srv.url == "http://127.0.0.1:PORT", srv.requests == 0
        ...
    with llama_openai_server(gguf) as base:      # "http://127.0.0.1:PORT/v1" (OpenAI API, llama-cpp-python)
        with fault_server("flaky", backend=base) as flaky:   # two HTTP 500s, then relayed to the model
            ...
    with ollama_test_server(gguf) as host:       # "http://127.0.0.1:PORT" (Ollama's /api/*)
        ollama.Client(host=host).chat(model="qwen2.5-coder:0.5b", messages=[...])

Fault modes (:data:`FAULT_MODES`), any path, GET and POST:

``refuse``   nothing listens on the port (bound, read, closed): the client's connect is refused.
``hang``     reads the request, never answers until the server is closed.
``error500`` HTTP 500 with a JSON body ``{"error": ...}``.
``garbage``  HTTP 200, ``Content-Type: application/json``, a body that is not JSON.
``drop``     HTTP 200 with ``Content-Length: 10000``, a few bytes of body, then the connection closes.
``flaky``    the first ``n_fail`` requests get the ``error500`` answer; later ones are proxied to
             ``backend`` and its answer relayed (buffered: a streamed answer arrives in one piece).

The two model servers start subprocesses; when llama-cpp-python (with its ``[server]`` extra) is not
installed they raise :class:`~neuromosaic_core.testing.models.ModelUnavailable`, so a test can skip
with one ``except``. When a server dies or stalls while starting they raise :class:`ServerStartError`
with the tail of its output.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from neuromosaic_core.testing.models import ModelUnavailable

__all__ = [
    "FAULT_MODES",
    "FaultServer",
    "ServerStartError",
    "fault_server",
    "free_port",
    "llama_cpp_missing",
    "llama_openai_server",
    "ollama_test_server",
]

FAULT_MODES = ("refuse", "hang", "error500", "garbage", "drop", "flaky")
DROP_DECLARED_LENGTH = 10_000
GARBAGE_BODY = b'<html><body>upstream says: this is not JSON {"oops": </body></html>'
_LLAMA_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class ServerStartError(RuntimeError):
    """A server subprocess exited, or did not answer in time, while starting."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# In-process fault server


class _TrackedServer(ThreadingHTTPServer):
    """A threading server whose close() ends every handler thread: open connections are shut down."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._requests = 0

    @property
    def port(self) -> int:
        return self.server_address[1]

    def count_request(self) -> int:
        with self._lock:
            self._requests += 1
            return self._requests

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        self.closing.set()  # releases "hang" handlers
        self.shutdown()  # stops serve_forever
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wakes handlers blocked reading a kept-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()  # closes the listening socket and joins the handler threads


class FaultServer:
    """A running fault server: ``url`` to point a client at, ``requests`` received so far."""

    def __init__(self, mode: str, url: str, server: _TrackedServer | None) -> None:
        self.mode = mode
        self.url = url
        self._server = server

    @property
    def requests(self) -> int:
        return self._server.requests if self._server is not None else 0

    def __repr__(self) -> str:
        return f"FaultServer(mode={self.mode!r}, url={self.url!r}, requests={self.requests})"


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing kept alive
    server: _FaultServerImpl

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._read_body()
        number = self.server.count_request()
        mode = self.server.mode
        if mode == "hang":
            self.server.closing.wait()
            self.close_connection = True
            return
        if mode == "error500" or (mode == "flaky" and number <= self.server.n_fail):
            error = {"error": f"injected fault: HTTP 500 from fault_server({mode!r}), request {number}"}
            self._send(500, json.dumps(error).encode())
        elif mode == "garbage":
            self._send(200, GARBAGE_BODY)
        elif mode == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(DROP_DECLARED_LENGTH))
            self.end_headers()
            self.wfile.write(b'{"id": "partial')
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif mode == "flaky":
            self._relay(body)
        else:  # pragma: no cover - modes are checked in fault_server()
            self._send(500, b'{"error": "unknown mode"}')

    def _relay(self, body: bytes) -> None:
        backend = self.server.backend
        assert backend is not None
        conn = http.client.HTTPConnection(backend.hostname or "127.0.0.1", backend.port or 80, timeout=self.server.backend_timeout)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection", "content-length", "accept-encoding"}}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            content_type = response.getheader("Content-Type") or "application/octet-stream"
            self._send(response.status, payload, content_type)
        except (OSError, http.client.HTTPException) as exc:
            self._send(502, json.dumps({"error": f"fault_server('flaky') could not reach {backend.geturl()}: {exc}"}).encode())
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _FaultServerImpl(_TrackedServer):
    def __init__(self, mode: str, n_fail: int, backend: urllib.parse.SplitResult | None, backend_timeout: float) -> None:
        super().__init__(_FaultHandler)
        self.mode = mode
        self.n_fail = n_fail
        self.backend = backend
        self.backend_timeout = backend_timeout


@contextlib.contextmanager
def fault_server(mode: str, *, backend: str | None = None, n_fail: int = 2, backend_timeout: float = 300.0) -> Iterator[FaultServer]:
    """Serve one fault ``mode`` (see the module docstring) on 127.0.0.1 for the ``with`` block.

    For ``"flaky"``, ``backend`` is the base URL of a real server (``http://127.0.0.1:P`` or with a
    path prefix such as ``/v1``); the fault server's ``url`` keeps that prefix so it can replace the
    backend's URL unchanged, and request paths are forwarded as they are.
    """
    if mode not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {mode!r}; expected one of {', '.join(FAULT_MODES)}")
    if (mode == "flaky") != (backend is not None):
        raise ValueError("backend= is required for mode 'flaky' and only allowed there")
    if mode == "refuse":
        yield FaultServer(mode, f"http://127.0.0.1:{free_port()}", None)
        return
    parsed = urllib.parse.urlsplit(backend) if backend is not None else None
    if parsed is not None and parsed.scheme != "http":
        raise ValueError(f"backend must be an http:// URL, got {backend!r}")
    server = _FaultServerImpl(mode, n_fail, parsed, backend_timeout)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault_server-{mode}", daemon=True)
    thread.start()
    try:
        prefix = parsed.path.rstrip("/") if parsed is not None else ""
        yield FaultServer(mode, f"http://127.0.0.1:{server.port}{prefix}", server)
    finally:
        server.close()
        thread.join()


# --------------------------------------------------------------------------------------------------
# Subprocess model servers


def llama_cpp_missing() -> str | None:
    """Why ``python -m llama_cpp.server`` cannot run in this interpreter, or ``None`` when it can."""
    missing = [name for name in _LLAMA_SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"llama-cpp-python[server] is not installed (missing modules: {', '.join(missing)}); pip install 'llama-cpp-python[server]'"
    return None


def _tail(log: IO[bytes], lines: int = 30) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what remains after 10 s, and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers the leader left behind, or a stuck leader
    proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
            return 200 <= response.status < 300
    except (OSError, http.client.HTTPException):
        return False


@contextlib.contextmanager
def _server_process(
    name: str, argv_for_port: Callable[[int], list[str]], ready_path: str, timeout: float, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Start a server subprocess in its own process group, wait until ``ready_path`` answers, yield its port.

    A start that loses the race for its port (another process took it between free_port() and the
    child's bind) is retried on a new port, twice at most.
    """
    for attempt in range(3):
        port = free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
        proc = subprocess.Popen(argv_for_port(port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0, env=env)
        try:
            deadline = time.monotonic() + timeout
            url = f"http://127.0.0.1:{port}{ready_path}"
            while True:
                if proc.poll() is not None:
                    output = _tail(log)
                    if attempt < 2 and "address already in use" in output.lower():
                        break
                    raise ServerStartError(f"{name} exited with code {proc.returncode} before answering {url}; last output:\n{output}")
                if _answers(url):
                    break
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{name} did not answer {url} within {timeout:g} s; last output:\n{_tail(log)}")
                time.sleep(0.2)
            if proc.poll() is not None:
                continue  # lost the port race: try another port
            yield port
            return
        finally:
            _kill_group(proc)
            log.close()
    raise ServerStartError(f"{name} could not bind a free port in 3 attempts")  # pragma: no cover


@contextlib.contextmanager
def llama_openai_server(
    model_path: str | os.PathLike[str],
    n_ctx: int = 4096,
    *,
    model_alias: str | None = None,
    n_threads: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serve a GGUF model over the OpenAI API with ``python -m llama_cpp.server``; yield ``http://127.0.0.1:P/v1``.

    ``model_alias`` is the model id that ``/v1/models`` reports (default: the file path);
    ``n_threads`` defaults to llama-cpp-python's choice (half the CPUs).
    """
    if reason := llama_cpp_missing():
        raise ModelUnavailable(reason)
    model = Path(model_path)
    if not model.is_file():
        raise ModelUnavailable(f"model file {model} does not exist")

    def argv(port: int) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
        ]
        if model_alias:
            args += ["--model_alias", model_alias]
        if n_threads:
            args += ["--n_threads", str(n_threads)]
        return args

    with _server_process("llama_cpp.server", argv, "/v1/models", timeout) as port:
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def ollama_test_server(
    model_path: str | os.PathLike[str],
    *,
    name: str = "qwen2.5-coder:0.5b",
    n_ctx: int = 4096,
    n_threads: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serve a GGUF model over Ollama's REST API (:mod:`neuromosaic_core.testing.ollama_server`); yield ``http://127.0.0.1:P``.

    ``name`` is the only model the server knows (what ``/api/tags`` lists); other names get Ollama's 404.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelUnavailable("llama-cpp-python is not installed; pip install llama-cpp-python")
    model = Path(model_path)
    if not model.is_file():
        raise ModelUnavailable(f"model file {model} does not exist")
    # The child imports this package: make sure it finds the same copy the parent uses.
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)

    def argv(port: int) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "neuromosaic_core.testing.ollama_server",
            "--model",
            str(model),
            "--port",
            str(port),
            "--name",
            name,
            "--n-ctx",
            str(n_ctx),
        ]
        if n_threads:
            args += ["--n-threads", str(n_threads)]
        return args

    with _server_process("ollama test server", argv, "/api/version", timeout, env=env) as port:
        yield f"http://127.0.0.1:{port}"
