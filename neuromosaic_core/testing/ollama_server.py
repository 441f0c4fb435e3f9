"""A small stand-in for an Ollama server, backed by a real GGUF model through llama-cpp-python.

A genuine Ollama server cannot be installed on the machines this project tests on (Debian and PyPI
carry only clients), so this module speaks enough of Ollama's REST API for the official ``ollama``
Python client, and for plain HTTP clients written against Ollama's documentation, to talk to a real
model over real HTTP::

    python -m neuromosaic_core.testing.ollama_server --model FILE.gguf --port 11434 [--name qwen2.5-coder:0.5b]

(or, in tests, :func:`neuromosaic_core.testing.llm_servers.ollama_test_server`). The model is loaded
once with ``llama_cpp.Llama(model_path, n_ctx, verbose=False)`` before the port opens; model calls
are serialised with a lock.

Implemented:

``POST /api/chat``
    ``model``, ``messages`` (role and content), ``options`` (``temperature``, ``seed``, ``num_ctx``,
    ``num_predict``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``repeat_penalty``,
    ``presence_penalty``, ``frequency_penalty``, ``mirostat``, ``mirostat_tau``, ``mirostat_eta``,
    ``tfs_z``, ``stop``), ``format`` (``"json"`` or a JSON schema), ``stream`` (default true, as in
    Ollama: NDJSON chunks ending with a ``done: true`` chunk; false: one JSON object). The prompt is
    built with the model's own chat template.
``POST /api/generate``
    ``prompt``, ``system``, ``raw`` (true: the prompt goes to the model untemplated), the same
    options, ``format`` and ``stream`` rules; the text is in ``response``.
``GET /api/tags``, ``GET /api/ps``, ``POST /api/show``, ``GET /api/version``, ``GET /`` and ``HEAD /``.

Answers carry Ollama's fields: ``model``, ``created_at``, ``message`` / ``response``, ``done``,
``done_reason`` (``stop``, ``length``, or ``load`` for an empty request), ``total_duration``,
``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``,
``eval_duration`` (durations in nanoseconds). Errors are ``{"error": "..."}`` with Ollama's status
codes: an unknown model is a 404 ``model "x" not found, try pulling it first``; a malformed request a
400; a failure while generating a 500 (or, once a stream has begun, a final ``{"error": ...}`` line).

Differences from Ollama, on purpose or for want of need: one model only (``--name``); no pulling,
creating, copying, deleting or embedding; ``tools``, ``images`` and ``think`` are refused with a 400;
a prompt longer than the context is an error instead of being truncated; a ``num_ctx`` different
from the loaded one reloads the model (as Ollama does); token counts of a generation are derived
from the streamed pieces and the model's evaluated tokens, so they can be off by one or two.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_NAME = "qwen2.5-coder:0.5b"
#: What ``GET /api/version`` reports: the Ollama release whose API this server follows.
OLLAMA_VERSION = "0.12.0"

# Ollama's sampling defaults (they differ from llama-cpp-python's).
_OLLAMA_DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1}
# Ollama option -> llama_cpp create_*_completion keyword.
_OPTION_MAP = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat_mode",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "tfs_z": "tfs_z",
    "seed": "seed",
    "stop": "stop",
}


class RequestError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _normalise(name: str) -> str:
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class _Stats:
    done_reason: str = "stop"
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "done_reason": self.done_reason,
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
        }


class ModelHost:
    """One llama_cpp.Llama, loaded once, used by one request at a time."""

    def __init__(self, model_path: str | Path, name: str = DEFAULT_NAME, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.name = name
        self.n_threads = n_threads
        self.lock = threading.Lock()
        stat = self.model_path.stat()
        self.size = stat.st_size
        self.modified_at = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat().replace("+00:00", "Z")
        self.digest = hashlib.sha256(f"{self.model_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        self.n_ctx = n_ctx
        self.llm: Any = None
        self.last_load_ns = self._load(n_ctx)
        meta = dict(self.llm.metadata)
        self.metadata = meta
        family = meta.get("general.architecture", "")
        self.details = {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family] if family else None,
            "parameter_size": meta.get("general.size_label", ""),
            "quantization_level": _quantization(meta.get("general.file_type")),
        }

    def _load(self, n_ctx: int) -> int:
        from llama_cpp import Llama

        start = time.perf_counter_ns()
        kwargs: dict[str, Any] = {"n_ctx": n_ctx, "verbose": False}
        if self.n_threads:
            kwargs["n_threads"] = self.n_threads
        self.llm = None  # free the old context first
        self.llm = Llama(str(self.model_path), **kwargs)
        self.n_ctx = n_ctx
        return time.perf_counter_ns() - start

    def knows(self, model: str) -> bool:
        return _normalise(model) == _normalise(self.name)

    def model_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }

    def generate(
        self, stats: _Stats, *, messages: list[dict[str, str]] | None = None, prompt: str | None = None, options: dict[str, Any], fmt: Any
    ) -> Iterator[str]:
        """Yield the text pieces of one generation; fill ``stats`` when done. Holds the lock throughout."""
        start = time.perf_counter_ns()
        with self.lock:
            num_ctx = options.get("num_ctx")
            stats.load_duration = 0
            if isinstance(num_ctx, int) and num_ctx > 0 and num_ctx != self.n_ctx:
                stats.load_duration = self._load(num_ctx)
            kwargs = dict(_OLLAMA_DEFAULTS)
            for key, target in _OPTION_MAP.items():
                if options.get(key) is not None:
                    kwargs[target] = options[key]
            num_predict = options.get("num_predict")
            if num_predict == 0:
                stats.done_reason = "length"
                stats.total_duration = time.perf_counter_ns() - start
                return
            kwargs["max_tokens"] = num_predict if isinstance(num_predict, int) and num_predict > 0 else -1
            if messages is not None:
                if fmt:
                    kwargs["response_format"] = {"type": "json_object", **({"schema": fmt} if isinstance(fmt, dict) else {})}
                chunks = self.llm.create_chat_completion(messages=messages, stream=True, **kwargs)
            else:
                if fmt:
                    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

                    kwargs["grammar"] = (
                        LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
                        if isinstance(fmt, dict)
                        else LlamaGrammar.from_string(JSON_GBNF, verbose=False)
                    )
                chunks = self.llm.create_completion(prompt=prompt or "", stream=True, **kwargs)
            gen_start = time.perf_counter_ns()
            first: int | None = None
            pieces = 0
            finish = None
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content") if "delta" in choice else choice.get("text")
                    finish = choice.get("finish_reason") or finish
                    if text:
                        if first is None:
                            first = time.perf_counter_ns()
                        pieces += 1
                        yield text
            finally:
                with contextlib.suppress(Exception):
                    chunks.close()
            end = time.perf_counter_ns()
            stats.done_reason = finish or "stop"
            stats.eval_count = pieces
            # The model has evaluated the prompt and every generated token but the last one sampled
            # (an end-of-generation token for "stop", which is not a piece; a piece for "length").
            evaluated_pieces = pieces - 1 if stats.done_reason == "length" else pieces
            stats.prompt_eval_count = max(int(self.llm.n_tokens) - max(evaluated_pieces, 0), 0)
            stats.prompt_eval_duration = (first or end) - gen_start
            stats.eval_duration = end - (first or end)
            stats.total_duration = end - start


def _quantization(file_type: Any) -> str:
    names = {
        "0": "F32",
        "1": "F16",
        "2": "Q4_0",
        "3": "Q4_1",
        "7": "Q8_0",
        "8": "Q5_0",
        "9": "Q5_1",
        "10": "Q2_K",
        "11": "Q3_K_S",
        "12": "Q3_K_M",
        "13": "Q3_K_L",
    }
    names |= {"14": "Q4_K_S", "15": "Q4_K_M", "16": "Q5_K_S", "17": "Q5_K_M", "18": "Q6_K", "32": "BF16"}
    return names.get(str(file_type), "unknown")


class OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "neuromosaic-ollama-test-server"
    server: OllamaServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        if self.server.verbose:
            super().log_message(format, *args)

    # ---------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self) -> dict[str, Any]:
        raw = self._body()
        if not raw.strip():
            raise RequestError(400, "missing request body")
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise RequestError(400, f"invalid JSON in request body: {exc}") from None
        if not isinstance(payload, dict):
            raise RequestError(400, "request body must be a JSON object")
        return payload

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def _route(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        routes = {
            ("GET", "/"): self._root,
            ("HEAD", "/"): self._root,
            ("GET", "/api/version"): lambda: self._send_json(200, {"version": OLLAMA_VERSION}),
            ("HEAD", "/api/version"): lambda: self._send_json(200, {"version": OLLAMA_VERSION}),
            ("GET", "/api/tags"): lambda: self._send_json(200, {"models": [self.server.host.model_entry()]}),
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): lambda: self._generate("chat"),
            ("POST", "/api/generate"): lambda: self._generate("generate"),
        }
        action = routes.get((self.command, path))
        if action is None:
            if any(p == path for _, p in routes):
                self._send(405, b"405 method not allowed", "text/plain")
            else:
                self._send(404, b"404 page not found", "text/plain")
            return
        try:
            action()
        except RequestError as exc:
            self._send_json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route

    # ---------------------------------------------------------------------------- endpoints
    def _root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _ps(self) -> None:
        entry = self.server.host.model_entry() | {"expires_at": "0001-01-01T00:00:00Z", "size_vram": 0, "context_length": self.server.host.n_ctx}
        self._send_json(200, {"models": [entry]})

    def _check_model(self, payload: dict[str, Any], *, show: bool = False) -> str:
        model = payload.get("model") or payload.get("name")
        if not isinstance(model, str) or not model:
            raise RequestError(400, "model is required")
        if not self.server.host.knows(model):
            raise RequestError(404, f"model '{model}' not found" if show else f'model "{model}" not found, try pulling it first')
        return model

    def _show(self) -> None:
        payload = self._json_body()
        self._check_model(payload, show=True)
        host = self.server.host
        info = {k: v for k, v in host.metadata.items() if not k.startswith("tokenizer.")}
        self._send_json(
            200,
            {
                "modelfile": f"FROM {host.model_path}\n",
                "parameters": "",
                "template": host.metadata.get("tokenizer.chat_template", ""),
                "details": host.details,
                "model_info": info,
                "capabilities": ["completion"],
                "modified_at": host.modified_at,
            },
        )

    def _generate(self, kind: str) -> None:
        payload = self._json_body()
        model = self._check_model(payload)
        for unsupported in ("tools", "images"):
            if payload.get(unsupported):
                raise RequestError(400, f"{unsupported} are not supported by this test server")
        if kind == "chat":
            for message in payload.get("messages") or []:
                if isinstance(message, dict) and message.get("images"):
                    raise RequestError(400, "images are not supported by this test server")
        if payload.get("think"):
            raise RequestError(400, f'"{model}" does not support thinking')
        options = payload.get("options") or {}
        if not isinstance(options, dict):
            raise RequestError(400, "options must be an object")
        stream = payload.get("stream", True) is not False
        fmt = payload.get("format") or None

        messages: list[dict[str, str]] | None = None
        prompt: str | None = None
        if kind == "chat":
            raw_messages = payload.get("messages") or []
            if not isinstance(raw_messages, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in raw_messages):
                raise RequestError(400, "messages must be a list of objects with a role")
            messages = [{"role": m["role"], "content": m.get("content") or ""} for m in raw_messages]
            empty = not messages
        else:
            prompt = payload.get("prompt") or ""
            if not isinstance(prompt, str):
                raise RequestError(400, "prompt must be a string")
            empty = not prompt
            if not payload.get("raw") and not empty:
                system = payload.get("system")
                messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

        def frame(text: str, done: bool) -> dict[str, Any]:
            head = {"model": model, "created_at": _now()}
            body = {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"response": text}
            return head | body | {"done": done}

        if empty:  # Ollama loads the model and answers at once
            self._send_json(200, frame("", True) | {"done_reason": "load"})
            return

        stats = _Stats()
        pieces = self.server.host.generate(stats, messages=messages, prompt=None if messages is not None else prompt, options=options, fmt=fmt)
        try:
            try:
                first = next(pieces, None)  # errors before any output still get a proper status
            except Exception as exc:  # noqa: BLE001 - reported to the client
                raise RequestError(500, f"generation failed: {exc}") from None
            if not stream:
                try:
                    text = "".join([first or "", *pieces])
                except Exception as exc:  # noqa: BLE001
                    raise RequestError(500, f"generation failed: {exc}") from None
                self._send_json(200, frame(text, True) | stats.fields())
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                if first is not None:
                    self._chunk(json.dumps(frame(first, False)).encode() + b"\n")
                for piece in pieces:
                    self._chunk(json.dumps(frame(piece, False)).encode() + b"\n")
                final = frame("", True) | stats.fields()
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001 - Ollama reports a failure mid-stream as a last line
                final = {"error": f"generation failed: {exc}"}
            self._chunk(json.dumps(final).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        finally:
            pieces.close()


class OllamaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], host: ModelHost, verbose: bool = False) -> None:
        super().__init__(address, OllamaHandler)
        self.host = host
        self.verbose = verbose


def build_server(
    model_path: str | Path, *, host: str = "127.0.0.1", port: int = 0, name: str = DEFAULT_NAME, n_ctx: int = 4096, n_threads: int | None = None
) -> OllamaServer:
    """Load the model and bind the server (not yet serving: call ``serve_forever()``)."""
    return OllamaServer((host, port), ModelHost(model_path, name=name, n_ctx=n_ctx, n_threads=n_threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuromosaic_core.testing.ollama_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port (printed)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"the model's name in the API (default {DEFAULT_NAME})")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length the model is loaded with")
    parser.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: llama-cpp-python's)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    server = build_server(args.model, host=args.host, port=args.port, name=args.name, n_ctx=args.n_ctx, n_threads=args.n_threads)
    server.verbose = args.verbose
    bound_host, bound_port = server.server_address[:2]
    print(f"ollama test server: {args.name} from {args.model} on http://{bound_host}:{bound_port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
