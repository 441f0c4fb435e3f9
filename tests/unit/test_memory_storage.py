"""The storage contract on the in-memory reference implementation (the test double other tests use)."""

from neuromosaic_core.testing.memory import InMemoryResultsDB
from neuromosaic_core.testing.storage import StorageContract


class TestInMemoryStorage(StorageContract):
    persistent = False

    def make_storage(self, tmp_path):
        return InMemoryResultsDB()
