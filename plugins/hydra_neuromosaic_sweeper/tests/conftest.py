"""``test_example.py`` runs the shipped example app with the sweeper, which needs a strategy
(``random``) and the SQLite storage (``sql``) plugin. ``nox -s plugin`` installs this plugin alone
with the core, where a skip would fail under CI's strict mode, so there that module is not
collected and the session header says why; with everything installed it runs."""

from neuromosaic_core.testing.plugins import leave_out_without

collect_ignore, pytest_report_header = leave_out_without(
    "hydra-neuromosaic-sweeper", {"random": "strategy", "sql": "storage"}, modules=("test_example.py",))
