"""The ``html`` visualizer as the orchestrator uses it (registered, cheap to import, the report
written at a run's end from the plots the others rendered) and the report of a database encrypted
at rest."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest

from neuromosaic_core.interfaces import FinishedRun
from neuromosaic_core.model import Experiment, TrialResult, TrialStatus
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.testing.memory import InMemoryResultsDB
from neuromosaic_core.testing.storage import make_trial

PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def html_visualizer():
    component = PluginSystem.load().get("visualizer", "html")
    return component.factory(settings=component.default_settings())


def test_importing_the_plugin_and_its_report_loads_no_plotting_or_learning_library():
    code = ("import sys, neuromosaic_visualizer_html, neuromosaic_visualizer_html.report\n"
            "print(','.join(m for m in ('matplotlib', 'sklearn', 'scipy', 'torch', 'plotly') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    code = "import sys, neuromosaic_visualizer_html; print('numpy' in sys.modules)"  # discovery imports only __init__
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_at_a_runs_end_it_writes_report_html_embedding_the_plots_already_rendered(tmp_path):
    db = InMemoryResultsDB()
    db.create_experiment(Experiment("e", "digits", {"search": {"metric": "val_accuracy", "direction": "maximize"}}))
    for i, acc in enumerate([0.5, 0.9, 0.7], 1):
        db.save_trial(make_trial("e", i, status=TrialStatus.COMPLETED, result=TrialResult({"val_accuracy": acc})))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "history.png").write_bytes(PIXEL)
    (tmp_path / "plots" / "stale.png").write_bytes(PIXEL)  # in the folder, but not rendered by this run
    visualizer = html_visualizer()
    assert visualizer.render(db.list_trials("e"), tmp_path / "plots", "val_accuracy") == []  # nothing before the end
    run = FinishedRun("e", tmp_path, db, (tmp_path / "plots" / "history.png",), "val_accuracy", True, 2, 75.0)
    assert visualizer.summarise(run) == [tmp_path / "report.html"]
    html = (tmp_path / "report.html").read_text()
    assert re.findall(r'data-plot="([^"]+)"', html) == ["history.png"]
    assert '<span class="best-value">0.9000</span>' in html and "(trial 2)" in html
    assert "1m 15s" in html, "the run's wall time"
    assert len(re.findall(r'<details[^>]* id="code-0-\d+"', html)) == 2, "search.top_k architectures with their code"


def test_the_report_of_a_sealed_store_shows_a_note_never_the_ciphertext(tmp_path):
    pytest.importorskip("cryptography")
    from neuromosaic_visualizer_html.report import collect, render_html

    from neuromosaic_core.encryption import EncryptedResultsDB, Keyring, generate_key, parse_key

    inner = InMemoryResultsDB()
    db = EncryptedResultsDB(inner, Keyring(parse_key(generate_key(), "test")), encrypt=True)
    db.create_experiment(Experiment("e", "digits"))
    db.save_trial(make_trial("e", 1, status=TrialStatus.COMPLETED, result=TrialResult({"val_accuracy": 0.5})))
    page = render_html([collect(inner, "e", visualizers=[])])
    assert "nmenc1:" not in page and "class Net" not in page
    assert f"encrypted at rest under the key of fingerprint {db.keys.primary}" in page
    assert "class Net" in render_html([collect(db, "e", visualizers=[])])  # with the key: the code
    # what the orchestrator hands the visualizer when encryption is on: the store as stored
    html_visualizer().summarise(FinishedRun("e", tmp_path, inner, (), "val_accuracy", True, 5))
    html = (tmp_path / "report.html").read_text()
    assert "encrypted at rest" in html and "class Net" not in html
