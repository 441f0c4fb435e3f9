"""A database encrypted at rest behind the API: queries need no key, the code routes need the right one
and otherwise answer 503 with the one-line reason (never the ciphertext, never a traceback)."""

from __future__ import annotations

import pytest
from neuromosaic_api.testing import CODE, EXPERIMENT, READ, fill

from neuromosaic_core.encryption import EncryptedResultsDB, Keyring, generate_key, parse_key
from neuromosaic_core.testing.memory import InMemoryResultsDB

pytest.importorskip("cryptography")


@pytest.fixture
def sealed(monkeypatch) -> tuple[InMemoryResultsDB, bytes]:
    for name in ("NEUROMOSAIC_ENCRYPTION_KEY", "NEUROMOSAIC_ENCRYPTION_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    key = parse_key(generate_key(), "k")
    inner = InMemoryResultsDB()
    fill(EncryptedResultsDB(inner, Keyring(key), encrypt=True))
    assert all(t.code is None or t.code.startswith("nmenc1:") for t in inner.trials.values())
    return inner, key


def test_with_the_key_the_code_routes_decrypt(make_client, sealed):
    inner, key = sealed
    client = make_client(EncryptedResultsDB(inner, Keyring(key)))
    assert client.get(f"/api/experiments/{EXPERIMENT}/trials/1/code", headers=READ).text == CODE
    assert client.get(f"/api/experiments/{EXPERIMENT}/trials/1", headers=READ).json()["code"] == CODE


def test_without_the_key_queries_work_and_the_code_is_refused_in_one_line(make_client, sealed):
    inner, key = sealed
    client = make_client(inner)
    best = client.get(f"/api/experiments/{EXPERIMENT}/best?k=2", headers=READ)
    assert best.status_code == 200 and best.json()[0]["number"] == 11
    for path in ("trials/1/code", "trials/1"):
        response = client.get(f"/api/experiments/{EXPERIMENT}/{path}", headers=READ)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "\n" not in detail and "encryption.key_file" in detail and Keyring(key).primary in detail
        assert "nmenc1:" not in response.text
    other = Keyring(parse_key(generate_key(), "other"))
    refused = make_client(EncryptedResultsDB(inner, other)).get(f"/api/experiments/{EXPERIMENT}/trials/1/code", headers=READ)
    assert refused.status_code == 503 and other.primary in refused.json()["detail"]


def test_encrypted_weights_are_served_decrypted_with_the_key(make_client, sealed, tmp_path):
    import attrs

    inner, key = sealed
    db = EncryptedResultsDB(inner, Keyring(key))
    trial = inner.find_trial(EXPERIMENT, 1)
    inner.save_trial(attrs.evolve(trial, result=attrs.evolve(trial.result, weights_path="weights/trial-0001.pt")))
    folder = tmp_path / "runs" / EXPERIMENT / "weights"
    folder.mkdir(parents=True)
    (folder / "trial-0001.pt").write_bytes(Keyring(key).encrypt_bytes(b"PK\x03\x04 the state dict"))
    response = make_client(db).get(f"/api/experiments/{EXPERIMENT}/trials/1/weights", headers=READ)
    assert response.status_code == 200 and response.content == b"PK\x03\x04 the state dict"
