"""Encryption at rest (``encryption.enabled=true``): AES-256-GCM with a key the operator provides.

What is encrypted (docs/security.md lists it with what is not): a trial's generated code and the
prompts, responses and error texts of its code-generation record in the results database, the
code and weights files of the run directory, the code in the git observer's ``code-history``, and
the code sections of the run directory's ``report.html`` (left out, with a note). Metrics, specs,
vectors, statuses and everything the queries use stay in clear.

The key (32 random bytes, URL-safe base64, as ``neuromosaic-results keygen`` writes it) comes from
``$NEUROMOSAIC_ENCRYPTION_KEY``, else the file named by ``$NEUROMOSAIC_ENCRYPTION_KEY_FILE``, else
``encryption.key_file``; it is never written beside the data. Every encrypted value carries the
key's *fingerprint* (the first 16 hex digits of a SHA-256 of the key), so reading with a wrong or
missing key is a one-line :class:`EncryptionKeyError` naming the setting, never garbage, and a key
rotation (``neuromosaic-results rekey``) can be interrupted and rerun: a value already under the
new key is recognised and skipped, one under the old key is re-encrypted.

Formats: a database value is ``nmenc1:<fingerprint>:<base64 of nonce + ciphertext>``; a file is
``NMENC1\\n`` + 8 fingerprint bytes + 12-byte nonce + ciphertext. The header is the AES-GCM
associated data, so a value cannot be relabelled with another key's fingerprint.

The key never enters a trial's sandbox: trials write code and weights in clear inside the run
directory, where only the orchestrator encrypts them, as soon as the trial ends (see
:func:`seal_trial_files`). ``cryptography`` is imported only when a key is used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_core.errors import NeuromosaicError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import CodeGenRecord, Experiment, StrategySnapshot, Trial, TrialStatus

KEY_ENV = "NEUROMOSAIC_ENCRYPTION_KEY"
KEY_FILE_ENV = "NEUROMOSAIC_ENCRYPTION_KEY_FILE"
NEW_KEY_ENV = "NEUROMOSAIC_NEW_ENCRYPTION_KEY"
SETTING = f"encryption.key_file (or ${KEY_ENV} / ${KEY_FILE_ENV})"
TEXT_PREFIX = "nmenc1:"
FILE_MAGIC = b"NMENC1\n"
_FP_BYTES = 8
_NONCE = 12
_HEADER = len(FILE_MAGIC) + _FP_BYTES
#: The marker a run directory gets when its files are encrypted: which key (fingerprint only).
MARKER = "encryption.json"
#: The folders of a run directory whose files are encrypted, and the suffixes concerned.
RUN_FILES = (("code", ".py"), ("weights", ".pt"))


class EncryptionKeyError(NeuromosaicError):
    """No key, a wrong key, a malformed key file, or ``cryptography`` missing (one line)."""


# -- keys ------------------------------------------------------------------------------------


def fingerprint(key: bytes) -> str:
    """The key's identifier: 16 hex digits of SHA-256 over a label and the key (not the key)."""
    return hashlib.sha256(b"neuromosaic-encryption-key\0" + key).hexdigest()[:2 * _FP_BYTES]


def generate_key() -> str:
    """A new key as text (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != 32:
        raise EncryptionKeyError(f"{where} does not hold an encryption key (expected 44 characters of URL-safe base64, "
                                 "as `neuromosaic-results keygen FILE` writes)")
    return key


def read_key_file(path: str | Path, where: str) -> bytes:
    file = Path(path).expanduser()
    try:
        return parse_key(file.read_text(encoding="ascii"), f"{where} ({file})")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a key file"
        raise EncryptionKeyError(f"{where}: cannot read the key file {file}: {reason}") from None


def key_from_environment(key_file: str = "") -> bytes | None:
    """The operator's key: ``$NEUROMOSAIC_ENCRYPTION_KEY``, else the file in
    ``$NEUROMOSAIC_ENCRYPTION_KEY_FILE``, else ``key_file`` (the setting); None when none is given."""
    if os.environ.get(KEY_ENV):
        return parse_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    if os.environ.get(KEY_FILE_ENV):
        return read_key_file(os.environ[KEY_FILE_ENV], f"${KEY_FILE_ENV}")
    if key_file:
        return read_key_file(key_file, "encryption.key_file")
    return None


def check_key_location(key_file: str, data: Iterable[Path]) -> None:
    """Refuse a key file kept inside a run directory or in the database's own folder: whoever
    copies the data would take the key with it."""
    if not key_file or os.environ.get(KEY_ENV):
        return
    key = Path(key_file).expanduser().resolve()
    for place in data:
        place = place.expanduser().resolve()
        if key.parent == place or place in key.parents:
            raise EncryptionKeyError(f"encryption.key_file {key} lies beside the data it protects ({place}); "
                                     "keep the key elsewhere (another disk, a secrets mount)")


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise EncryptionKeyError("encryption needs the cryptography package: pip install 'neuromosaic-core[encryption]'") from None
    return AESGCM(key)


class Keyring:
    """The keys a process holds: ``primary`` encrypts; every key (the primary and, during a
    rotation, the old one) decrypts what carries its fingerprint."""

    def __init__(self, primary: bytes | None, others: Sequence[bytes] = ()) -> None:
        self.primary = fingerprint(primary) if primary is not None else None
        self._keys: dict[str, bytes] = {}
        for key in [*([primary] if primary is not None else []), *others]:
            self._keys.setdefault(fingerprint(key), key)
        self._ciphers: dict[str, Any] = {}

    @classmethod
    def from_environment(cls, key_file: str = "") -> Keyring:
        return cls(key_from_environment(key_file))

    def _cipher(self, fp: str, what: str) -> Any:
        if fp not in self._keys:
            held = (f"the key given has fingerprint {', '.join(sorted(self._keys))}" if self._keys
                    else "no key is given")
            raise EncryptionKeyError(f"{what} is encrypted with the key of fingerprint {fp}, and {held}; "
                                     f"set {SETTING} to that key")
        cipher = self._ciphers.get(fp)
        if cipher is None:
            cipher = self._ciphers[fp] = _aesgcm(self._keys[fp])
        return cipher

    def _require_primary(self) -> str:
        if self.primary is None:
            raise EncryptionKeyError(f"encryption.enabled is true but no key is given; set {SETTING}")
        return self.primary

    # -- text (database values) --

    def encrypt_text(self, text: str) -> str:
        fp = self._require_primary()
        nonce = secrets.token_bytes(_NONCE)
        header = f"{TEXT_PREFIX}{fp}:"
        sealed = self._cipher(fp, "").encrypt(nonce, text.encode("utf-8"), header.encode("ascii"))
        return header + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt_text(self, value: str, what: str) -> str:
        """``value`` in clear (it is not an encrypted value: stored before encryption was on), or
        decrypted; :class:`EncryptionKeyError` for a key not held or a value that fails its check."""
        fp = text_fingerprint(value)
        if fp is None:
            return value
        header = f"{TEXT_PREFIX}{fp}:"
        try:
            blob = base64.b64decode(value[len(header):], validate=True)
            plain = self._cipher(fp, what).decrypt(blob[:_NONCE], blob[_NONCE:], header.encode("ascii"))
        except EncryptionKeyError:
            raise
        except Exception:
            raise EncryptionKeyError(f"{what} does not decrypt with the key of fingerprint {fp}: the stored value is "
                                     "damaged") from None
        return plain.decode("utf-8")

    # -- bytes (files) --

    def encrypt_bytes(self, data: bytes) -> bytes:
        fp = self._require_primary()
        header = FILE_MAGIC + bytes.fromhex(fp)
        nonce = secrets.token_bytes(_NONCE)
        return header + nonce + self._cipher(fp, "").encrypt(nonce, data, header)

    def decrypt_bytes(self, data: bytes, what: str) -> bytes:
        fp = bytes_fingerprint(data)
        if fp is None:
            return data
        header = data[:_HEADER]
        try:
            return bytes(self._cipher(fp, what).decrypt(data[_HEADER:_HEADER + _NONCE], data[_HEADER + _NONCE:], header))
        except EncryptionKeyError:
            raise
        except Exception:
            raise EncryptionKeyError(f"{what} does not decrypt with the key of fingerprint {fp}: the file is damaged") from None

    def read_file(self, path: str | Path) -> bytes:
        """A file's content, decrypted when it is encrypted."""
        return self.decrypt_bytes(Path(path).read_bytes(), str(path))

    def seal_file(self, path: str | Path) -> bool:
        """Encrypt ``path`` in place under the primary key (atomically: a temporary file and a
        rename); a file already under it is left alone, one under another held key re-encrypted.
        Returns whether the file was rewritten."""
        file = Path(path)
        data = file.read_bytes()
        if bytes_fingerprint(data) == self._require_primary():
            return False
        sealed = self.encrypt_bytes(self.decrypt_bytes(data, str(file)))
        tmp = file.with_name(f".{file.name}.sealing")
        tmp.write_bytes(sealed)
        os.replace(tmp, file)
        return True


def text_fingerprint(value: Any) -> str | None:
    """The key fingerprint of an encrypted database value; None for anything else (clear text)."""
    if not isinstance(value, str) or not value.startswith(TEXT_PREFIX):
        return None
    fp = value[len(TEXT_PREFIX):len(TEXT_PREFIX) + 2 * _FP_BYTES]
    return fp if value[len(TEXT_PREFIX) + 2 * _FP_BYTES:len(TEXT_PREFIX) + 2 * _FP_BYTES + 1] == ":" else None


def bytes_fingerprint(data: bytes) -> str | None:
    """The key fingerprint of an encrypted file's content; None for a file in clear."""
    if not data.startswith(FILE_MAGIC) or len(data) < _HEADER + _NONCE:
        return None
    return data[len(FILE_MAGIC):_HEADER].hex()


def is_encrypted_text(value: Any) -> bool:
    return text_fingerprint(value) is not None


def read_file(path: str | Path, key_file: str = "") -> bytes:
    """A run-directory file's content: decrypted with the operator's key when it is encrypted."""
    data = Path(path).read_bytes()
    if bytes_fingerprint(data) is None:
        return data
    return Keyring.from_environment(key_file).decrypt_bytes(data, str(path))


# -- trials ----------------------------------------------------------------------------------

_RECORD_FIELDS = ("prompt", "response", "error")


def _map_record(record: CodeGenRecord | None, fn: Any) -> CodeGenRecord | None:
    if record is None:
        return None
    attempts = tuple(attrs.evolve(a, **{f: fn(getattr(a, f)) for f in _RECORD_FIELDS if getattr(a, f)})
                     for a in record.attempts)
    return attrs.evolve(record, attempts=attempts)


def trial_fingerprints(trial: Trial) -> set[str | None]:
    """The fingerprints of a trial's secret values (None for a value in clear)."""
    values = [trial.code] if trial.code else []
    if trial.codegen is not None:
        values += [getattr(a, f) for a in trial.codegen.attempts for f in _RECORD_FIELDS if getattr(a, f)]
    return {text_fingerprint(v) for v in values}


def seal_trial(trial: Trial, keys: Keyring) -> Trial:
    """A copy of ``trial`` whose code and code-generation texts are encrypted under the primary
    key (values under another held key are re-encrypted; already sealed ones kept)."""

    def seal(value: str) -> str:
        if text_fingerprint(value) == keys.primary:
            return value
        return keys.encrypt_text(keys.decrypt_text(value, f"the code of trial {trial.number} of {trial.experiment}"))

    return attrs.evolve(trial, code=seal(trial.code) if trial.code else trial.code, codegen=_map_record(trial.codegen, seal))


def open_trial(trial: Trial, keys: Keyring, strict: bool = True) -> Trial:
    """Decrypt ``trial``'s code and code-generation texts in place; returns it. Not ``strict``:
    a value whose key is not held stays encrypted (a query on metrics needs no key), and
    :func:`require_open` raises for it where the code is shown."""
    what = f"the code of trial {trial.number} of {trial.experiment}"

    def decrypt(value: str) -> str:
        fp = text_fingerprint(value)
        if fp is not None and not strict and fp not in keys._keys:
            return value
        return keys.decrypt_text(value, what)

    if trial.code:
        trial.code = decrypt(trial.code)
    if trial.codegen is not None:
        trial.codegen = _map_record(trial.codegen, decrypt)
    return trial


def require_open(trial: Trial, keys: Keyring | None = None) -> Trial:
    """``trial`` unchanged when none of its code or code-generation texts is still encrypted, else
    the one-line :class:`EncryptionKeyError` naming the key's fingerprint, the key held (``keys``,
    else the operator's from the environment) and the setting."""
    if any(fp is not None for fp in trial_fingerprints(trial)):
        open_trial(trial, keys if keys is not None else Keyring.from_environment())  # raises, naming both
    return trial


class EncryptedResultsDB(ResultsDB):
    """Any :class:`ResultsDB`, with trial code and code-generation texts encrypted on the way in
    (when ``encrypt``) and decrypted on the way out. Everything else passes through in clear, so
    the backend's queries on metrics and specs are unchanged. ``inner`` is the backend itself (what
    ``rekey`` and the run directory's report read: values as stored). A value whose key is not held
    is returned still encrypted, so queries on metrics and specs work without the key; whoever
    shows code calls :func:`require_open`, and writing such a value back raises."""

    def __init__(self, inner: ResultsDB, keys: Keyring, encrypt: bool = False) -> None:
        self.inner, self.keys, self.encrypt = inner, keys, encrypt
        if encrypt:
            keys._require_primary()

    def __getattr__(self, name: str) -> Any:  # backend extras: url, stored_schema_version, ...
        if name == "inner":  # not set yet (copy, pickle): no endless lookup
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _open(self, trial: Trial | None) -> Any:
        return open_trial(trial, self.keys, strict=False) if trial is not None else None

    def _open_all(self, trials: list[Trial]) -> list[Trial]:
        for t in trials:
            open_trial(t, self.keys, strict=False)
        return trials

    def get_experiment(self, name: str) -> Experiment | None:
        return self.inner.get_experiment(name)

    def create_experiment(self, experiment: Experiment) -> Experiment:
        return self.inner.create_experiment(experiment)

    def list_experiments(self) -> list[Experiment]:
        return self.inner.list_experiments()

    def save_trial(self, trial: Trial) -> Trial:
        if not self.encrypt:
            return self.inner.save_trial(trial)
        stored = self.inner.save_trial(seal_trial(trial, self.keys))
        trial.id = stored.id
        return trial

    def save_trials(self, trials: list[Trial]) -> list[Trial]:
        saver = getattr(self.inner, "save_trials", None)
        if saver is None:
            return [self.save_trial(t) for t in trials]
        if not self.encrypt:
            return saver(trials)
        sealed = saver([seal_trial(t, self.keys) for t in trials])
        for trial, stored in zip(trials, sealed, strict=True):
            trial.id = stored.id
        return trials

    def list_trials(self, experiment: str, status: TrialStatus | None = None) -> list[Trial]:
        return self._open_all(self.inner.list_trials(experiment, status))

    def find_reusable(self, reuse_key: str, experiment: str | None = None) -> Trial | None:
        return self._open(self.inner.find_reusable(reuse_key, experiment))

    def find_cached_code(self, cache_key: str) -> str | None:
        """Decrypted; a miss (None) when the cached code is under a key not held: the code is
        generated again rather than handed to a trial sealed, or the search stopped for a cache."""
        code = self.inner.find_cached_code(cache_key)
        fp = text_fingerprint(code)
        if fp is not None and fp not in self.keys._keys:
            return None
        return self.keys.decrypt_text(code, "cached code") if code else code

    def list_history(self, experiment: str, after: int = 0) -> list[Trial]:
        return self._open_all(self.inner.list_history(experiment, after))

    def max_trial_number(self, experiment: str) -> int:
        return self.inner.max_trial_number(experiment)

    def save_snapshot(self, experiment: str, snapshot: StrategySnapshot) -> None:
        self.inner.save_snapshot(experiment, snapshot)

    def load_snapshot(self, experiment: str) -> StrategySnapshot | None:
        return self.inner.load_snapshot(experiment)

    def get_best_architectures(self, experiment: str, k: int = 5, metric: str = "val_accuracy", maximize: bool = True) -> list[Trial]:
        return self._open_all(self.inner.get_best_architectures(experiment, k=k, metric=metric, maximize=maximize))

    def metric_names(self, experiment: str) -> list[str]:
        return self.inner.metric_names(experiment)

    def metric_points(self, experiment: str, metrics: Sequence[str]) -> list[tuple[int, tuple[float, ...]]]:
        return self.inner.metric_points(experiment, metrics)

    def pareto_ids(self, experiment: str, x: str, y: str, *, minimize_x: bool = True, maximize_y: bool = True) -> list[int]:
        return self.inner.pareto_ids(experiment, x, y, minimize_x=minimize_x, maximize_y=maximize_y)

    def get_trials(self, experiment: str, ids: Sequence[int]) -> list[Trial]:
        return self._open_all(self.inner.get_trials(experiment, ids))

    def find_trial(self, experiment: str, number: int) -> Trial | None:
        return self._open(self.inner.find_trial(experiment, number))

    def count_trials(self, experiment: str) -> dict[TrialStatus, int]:
        return self.inner.count_trials(experiment)

    def mark_interrupted(self, experiment: str) -> list[Trial]:
        return self._open_all(self.inner.mark_interrupted(experiment))

    def backup(self, target: str) -> None:
        self.inner.backup(target)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"EncryptedResultsDB({self.inner!r})"


def raw_storage(db: ResultsDB) -> ResultsDB:
    """The backend under an :class:`EncryptedResultsDB` (values as stored), else ``db``."""
    return db.inner if isinstance(db, EncryptedResultsDB) else db


def check_experiment_key(db: ResultsDB, experiment: str, keys: Keyring) -> None:
    """Before a resume writes anything: the experiment's latest trial with code must decrypt with
    the keys held (a search resumed with another key would mix two keys in one experiment)."""
    inner = raw_storage(db)
    number = inner.max_trial_number(experiment)
    for n in range(number, max(0, number - 50), -1):
        found = inner.find_trial(experiment, n)
        if found is not None and found.code:
            for fp in trial_fingerprints(found) - {None}:
                keys._cipher(fp, f"experiment {experiment!r}")  # type: ignore[arg-type]
            return


# -- run directories -------------------------------------------------------------------------


def run_files(run_dir: Path) -> Iterator[Path]:
    """The files of a run directory that are kept encrypted (code/*.py, weights/*.pt)."""
    for folder, suffix in RUN_FILES:
        directory = run_dir / folder
        if directory.is_dir():
            yield from sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(suffix))


def seal_trial_files(keys: Keyring, *paths: str | Path | None) -> None:
    """Encrypt these files in place when they exist (a trial's code and weights, when it ends)."""
    for path in paths:
        if path and Path(path).is_file():
            keys.seal_file(path)


def seal_run_dir(run_dir: Path, keys: Keyring) -> int:
    """Encrypt every clear file of :func:`run_files` and record the key's fingerprint in
    ``encryption.json``; returns how many files were rewritten."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    done = sum(keys.seal_file(p) for p in run_files(run_dir))
    marker = run_dir / MARKER
    content = json.dumps({"cipher": "AES-256-GCM", "key_fingerprint": keys.primary}, indent=2) + "\n"
    if not marker.exists() or marker.read_text() != content:
        tmp = run_dir / f".{MARKER}.tmp"
        tmp.write_text(content)
        os.replace(tmp, marker)
    return done


# -- key rotation ----------------------------------------------------------------------------


@attrs.define
class RekeyCounts:
    """What one ``rekey`` did: trials rewritten, trials already under the new key, files rewritten,
    git histories rewritten."""

    trials: int = 0
    kept: int = 0
    files: int = 0
    histories: int = 0
    #: The run directories the trials' weights paths point into (``<run_dir>/weights/trial-NNNN.pt``).
    run_dirs: set[Path] = attrs.field(factory=set)


def rekey_database(db: ResultsDB, keys: Keyring, batch: int = 500, progress: Any = None) -> RekeyCounts:
    """Put every trial's secret values of ``db`` (the backend itself, see :func:`raw_storage`)
    under ``keys.primary``: values under another held key are re-encrypted, values in clear
    encrypted, values already under the new key left alone. Trials are rewritten ``batch`` at a
    time in one transaction where the backend offers one (peewee's ``db.atomic()``), each trial
    whole, so a run killed at any point leaves every value readable with one of the two keys and a
    rerun finishes the work. A value under a key not held stops it with an
    :class:`EncryptionKeyError` naming the trial."""
    keys._require_primary()
    db = raw_storage(db)
    counts = RekeyCounts()
    atomic = getattr(getattr(db, "db", None), "atomic", None)
    for experiment in db.list_experiments():
        todo = []
        for trial in db.list_trials(experiment.name):
            if trial.result is not None and trial.result.weights_path:
                counts.run_dirs.add(Path(trial.result.weights_path).parent.parent)
            fps = trial_fingerprints(trial)
            if not fps or fps == {keys.primary}:
                counts.kept += 1
            else:
                todo.append(trial)
        for start in range(0, len(todo), batch):
            chunk = [seal_trial(t, keys) for t in todo[start:start + batch]]
            if atomic is not None:
                with atomic():
                    for t in chunk:
                        db.save_trial(t)
            else:
                for t in chunk:
                    db.save_trial(t)
            counts.trials += len(chunk)
            if progress is not None:
                progress(experiment.name, counts.trials)
    return counts


def rekey_run_dir(run_dir: Path, keys: Keyring) -> RekeyCounts:
    """Re-encrypt a run directory under ``keys.primary``: its code and weights files (one by one,
    each atomically) and the history of every git repository directly inside it (the git
    observer's ``code-history``), whose old objects are then pruned. ``encryption.json`` is
    updated last. Safe to rerun after an interruption."""
    counts = RekeyCounts()
    if not run_dir.is_dir():
        raise EncryptionKeyError(f"run directory {run_dir} does not exist")
    for path in run_files(run_dir):
        counts.files += keys.seal_file(path)
    for repo in sorted(p.parent for p in run_dir.glob("*/.git")):
        counts.histories += rekey_git_history(repo, keys)
    seal_run_dir(run_dir, keys)
    return counts


def rekey_git_history(repo: Path, keys: Keyring) -> bool:
    """Rewrite every commit reachable from a ref of ``repo`` so that each encrypted blob (and
    each ``.py`` blob in clear) is under ``keys.primary``; other blobs, messages, authors and dates
    are kept as they are. Refs move in one transaction, then the working tree is reset to the new
    ``HEAD`` and the old objects are pruned (``reflog expire`` + ``gc --prune=now``), so no object
    readable with the old key remains. Returns whether anything was rewritten."""
    import shutil
    import subprocess  # nosec B404 - git, found on PATH, with a fixed argv on the operator's own repository

    repo = repo.resolve()
    git = shutil.which("git")
    if git is None:
        raise EncryptionKeyError(f"cannot re-encrypt the git history in {repo}: no `git` executable on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")

    def run(*args: str, data: bytes | None = None, extra: dict[str, str] | None = None) -> bytes:
        proc = subprocess.run([git, "-C", str(repo), *args], input=data, capture_output=True,  # nosec B603 - no shell, fixed git argv
                              env={**env, **(extra or {})}, check=False)
        if proc.returncode != 0:
            first = proc.stderr.decode(errors="replace").strip().splitlines()
            raise EncryptionKeyError(f"git {args[0]} in {repo} failed: {first[0] if first else proc.returncode}")
        return proc.stdout

    refs = [line.split(" ", 2) for line in run("for-each-ref", "--format=%(objectname) %(objecttype) %(refname)").decode().splitlines()]
    if not refs:
        return False
    blobs: dict[str, str] = {}
    commits: dict[str, str] = {}

    def blob(sha: str, path: str) -> str:
        if sha not in blobs:
            data = run("cat-file", "blob", sha)
            fp = bytes_fingerprint(data)
            if fp == keys.primary or (fp is None and not path.endswith(".py")):
                blobs[sha] = sha
            else:
                sealed = keys.encrypt_bytes(keys.decrypt_bytes(data, f"{path} in the git history of {repo}"))
                blobs[sha] = run("hash-object", "-w", "--stdin", data=sealed).decode().strip()
        return blobs[sha]

    index = repo / ".git" / "neuromosaic-rekey.index"
    for commit in run("rev-list", "--reverse", "--topo-order", "--all").decode().split():
        lines = []
        for entry in run("ls-tree", "-r", "-z", commit).split(b"\0"):
            if not entry:
                continue
            meta, path = entry.decode().split("\t", 1)
            mode, kind, sha = meta.split()
            lines.append(f"{mode} {blob(sha, path) if kind == 'blob' else sha}\t{path}")
        index.unlink(missing_ok=True)
        extra = {"GIT_INDEX_FILE": str(index)}
        run("update-index", "--add", "--index-info", data=("\n".join(lines) + "\n").encode() if lines else b"", extra=extra)
        tree = run("write-tree", extra=extra).decode().strip()
        raw = run("cat-file", "commit", commit).decode()
        head, _, message = raw.partition("\n\n")
        rebuilt = []
        for line in head.split("\n"):
            if line.startswith("tree "):
                line = f"tree {tree}"
            elif line.startswith("parent "):
                line = f"parent {commits[line.split()[1]]}"
            rebuilt.append(line)
        commits[commit] = run("hash-object", "-t", "commit", "-w", "--stdin",
                              data=("\n".join(rebuilt) + "\n\n" + message).encode()).decode().strip()
    index.unlink(missing_ok=True)
    moves = [(ref, sha, commits[sha]) for sha, kind, ref in refs if kind == "commit" and commits.get(sha, sha) != sha]
    if moves:
        run("update-ref", "--stdin", data="".join(f"update {ref} {new} {old}\n" for ref, old, new in moves).encode())
    # Also when nothing moved: a run killed after the refs moved left the working tree (checked out
    # under the old key) and the old objects behind.
    run("reset", "--quiet", "--hard", "HEAD")
    (repo / ".git" / "ORIG_HEAD").unlink(missing_ok=True)
    run("reflog", "expire", "--expire=now", "--all")
    run("gc", "--quiet", "--prune=now")
    return bool(moves)
