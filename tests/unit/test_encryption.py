"""Encryption at rest: what is sealed, what stays queryable, and what a wrong or missing key says."""

from __future__ import annotations

import pytest

from neuromosaic_core.encryption import (
    EncryptedResultsDB,
    EncryptionKeyError,
    Keyring,
    bytes_fingerprint,
    check_key_location,
    fingerprint,
    generate_key,
    key_from_environment,
    parse_key,
    raw_storage,
    rekey_database,
    require_open,
    seal_run_dir,
    text_fingerprint,
)
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
from neuromosaic_core.testing.memory import InMemoryResultsDB
from neuromosaic_core.testing.storage import PROMPT, RESPONSE, make_codegen, make_trial

pytest.importorskip("cryptography")


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch):
    for name in ("NEUROMOSAIC_ENCRYPTION_KEY", "NEUROMOSAIC_ENCRYPTION_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def key() -> bytes:
    return parse_key(generate_key(), "test")


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_value_round_trips_carries_its_fingerprint_and_hides_the_text():
    k = key()
    keys = Keyring(k)
    sealed = keys.encrypt_text(PROMPT)
    assert PROMPT not in sealed and "Write" not in sealed
    assert text_fingerprint(sealed) == fingerprint(k) == keys.primary
    assert keys.decrypt_text(sealed, "x") == PROMPT
    assert keys.encrypt_text(PROMPT) != sealed  # a fresh nonce each time
    assert keys.decrypt_text("class Net: pass", "x") == "class Net: pass"  # stored before encryption was on


def test_a_wrong_or_missing_key_is_one_line_naming_the_setting_and_both_fingerprints():
    sealed = Keyring(key()).encrypt_text("secret code")
    other = Keyring(key())
    with pytest.raises(EncryptionKeyError) as wrong:
        other.decrypt_text(sealed, "the code of trial 3 of exp")
    message = one_line(wrong)
    assert "trial 3" in message and "encryption.key_file" in message
    assert text_fingerprint(sealed) in message and other.primary in message
    with pytest.raises(EncryptionKeyError) as missing:
        Keyring(None).decrypt_text(sealed, "the code")
    assert "no key is given" in one_line(missing)


def test_a_tampered_or_relabelled_value_is_refused_not_returned_as_garbage():
    k = key()
    keys = Keyring(k)
    sealed = keys.encrypt_text("x = 1")
    body = sealed[-10:]
    flipped = sealed[:-10] + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(EncryptionKeyError, match="damaged"):
        keys.decrypt_text(flipped, "v")
    blob = keys.encrypt_bytes(b"weights")
    with pytest.raises(EncryptionKeyError, match="damaged"):
        keys.decrypt_bytes(blob[:-1] + bytes([blob[-1] ^ 1]), "w.pt")


def test_key_sources_and_malformed_keys(tmp_path, monkeypatch):
    assert key_from_environment() is None
    path = tmp_path / "k"
    path.write_text("not a key\n")
    with pytest.raises(EncryptionKeyError) as bad:
        key_from_environment(str(path))
    assert "encryption.key_file" in one_line(bad) and "keygen" in str(bad.value)
    with pytest.raises(EncryptionKeyError, match="cannot read the key file"):
        key_from_environment(str(tmp_path / "missing"))
    good = generate_key()
    path.write_text(good + "\n")
    assert key_from_environment(str(path)) == parse_key(good, "x")
    env_key = generate_key()
    monkeypatch.setenv("NEUROMOSAIC_ENCRYPTION_KEY", env_key)
    assert key_from_environment(str(path)) == parse_key(env_key, "x")  # the environment wins


def test_a_key_file_beside_the_data_is_refused(tmp_path):
    data = tmp_path / "runs"
    (data / "exp").mkdir(parents=True)
    with pytest.raises(EncryptionKeyError, match="beside the data"):
        check_key_location(str(data / "exp" / "key"), [data])
    with pytest.raises(EncryptionKeyError, match="beside the data"):
        check_key_location(str(tmp_path / "key"), [tmp_path])
    check_key_location(str(tmp_path / "secrets" / "key"), [data])  # elsewhere: fine


def stored(db: InMemoryResultsDB) -> list:
    return list(db.trials.values())


def test_the_store_holds_code_and_prompts_sealed_while_metrics_and_specs_stay_queryable():
    inner = InMemoryResultsDB()
    db = EncryptedResultsDB(inner, Keyring(key()), encrypt=True)
    db.create_experiment(Experiment("e", "digits"))
    for n in (1, 2):
        t = make_trial("e", n, status=TrialStatus.COMPLETED, codegen=make_codegen(f"k{n}"),
                       result=TrialResult({"val_accuracy": n / 10}))
        db.save_trial(t)
        assert t.id is not None and t.code.startswith("class Net")  # the caller's trial stays in clear
    for raw in stored(inner):
        assert text_fingerprint(raw.code) == db.keys.primary
        for attempt in raw.codegen.attempts:
            assert text_fingerprint(attempt.response) is not None and text_fingerprint(attempt.prompt) is not None
        assert raw.codegen.model == "qwen2.5-coder:7b" and raw.spec is not None  # who wrote it, and the spec: clear
    best = db.get_best_architectures("e", k=1)
    assert best[0].number == 2 and best[0].code.startswith("class Net")
    assert best[0].codegen.attempts[1].response == RESPONSE
    assert db.find_cached_code("k1").startswith("class Net")

    # Without the key: queries on metrics work, the code is refused where it is shown, in one line.
    keyless = EncryptedResultsDB(inner, Keyring(None))
    assert [t.number for t in keyless.get_best_architectures("e", k=2)] == [2, 1]
    with pytest.raises(EncryptionKeyError) as refused:
        require_open(keyless.find_trial("e", 1))
    assert "encryption.key_file" in one_line(refused)
    assert keyless.find_cached_code("k1") is None  # a cache miss: never sealed bytes handed to a trial as code


def test_encrypting_without_a_key_is_refused_at_once():
    with pytest.raises(EncryptionKeyError, match="no key is given"):
        EncryptedResultsDB(InMemoryResultsDB(), Keyring(None), encrypt=True)


def test_rekey_resumes_from_any_mix_of_old_new_and_clear_values():
    old, new = key(), key()
    inner = InMemoryResultsDB()
    db = EncryptedResultsDB(inner, Keyring(old), encrypt=True)
    db.create_experiment(Experiment("e", "digits"))
    for n in range(1, 7):
        db.save_trial(make_trial("e", n, codegen=make_codegen(f"k{n}")))
    plain = EncryptedResultsDB(inner, Keyring(None))
    plain.save_trial(make_trial("e", 7))  # from before encryption was turned on
    both = Keyring(new, [old])
    # An interrupted rotation: trials 1-3 already under the new key.
    for raw in stored(inner)[:3]:
        EncryptedResultsDB(inner, both, encrypt=True).save_trial(EncryptedResultsDB(inner, both)._open(raw))
    counts = rekey_database(db, both, batch=2)
    assert (counts.trials, counts.kept) == (4, 3)
    assert {text_fingerprint(t.code) for t in stored(inner)} == {fingerprint(new)}
    reader = EncryptedResultsDB(inner, Keyring(new))
    assert [t.code for t in reader.list_trials("e")] == [make_trial("e", n).code for n in range(1, 8)]
    assert rekey_database(db, both).trials == 0  # a rerun finds nothing left to do
    with pytest.raises(EncryptionKeyError):  # the old key alone reads nothing any more
        require_open(EncryptedResultsDB(inner, Keyring(old)).find_trial("e", 1))


def test_rekey_stops_naming_the_trial_for_a_value_under_a_key_it_does_not_hold():
    inner = InMemoryResultsDB()
    db = EncryptedResultsDB(inner, Keyring(key()), encrypt=True)
    db.create_experiment(Experiment("e", "digits"))
    db.save_trial(make_trial("e", 4))
    with pytest.raises(EncryptionKeyError, match="trial 4"):
        rekey_database(raw_storage(db), Keyring(key(), [key()]))


def test_run_directory_files_are_sealed_in_place_and_marked(tmp_path):
    keys = Keyring(key())
    (tmp_path / "code").mkdir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "code" / "trial-0001.py").write_text("class Net: pass\n")
    (tmp_path / "weights" / "trial-0001.pt").write_bytes(b"\x80\x02weights")
    (tmp_path / "summary.json").write_text("{}")
    assert seal_run_dir(tmp_path, keys) == 2
    assert seal_run_dir(tmp_path, keys) == 0  # already sealed
    for path in ("code/trial-0001.py", "weights/trial-0001.pt"):
        assert bytes_fingerprint((tmp_path / path).read_bytes()) == keys.primary
    assert keys.read_file(tmp_path / "code" / "trial-0001.py") == b"class Net: pass\n"
    assert (tmp_path / "summary.json").read_text() == "{}"
    assert keys.primary in (tmp_path / "encryption.json").read_text()

