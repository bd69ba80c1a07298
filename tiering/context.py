"""What an entry point (CLI, service, scheduler) needs: settings, a migrated database, the object store."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from tiering.db.connection import connect, resolve_database_url, with_timeouts
from tiering.db.migrations import migrate
from tiering.db.policies import get_policy_document
from tiering.policy import ArchivalConfig, ArchivalPolicy, load_policy_file, policy_from_dict
from tiering.settings import Settings

if TYPE_CHECKING:
    from tiering.store.base import ObjectStore


class Context:
    """Resolved once per process; the database is migrated on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def database_url(self) -> str:
        with self._lock:
            url = with_timeouts(resolve_database_url(self.settings), self.settings)
            with connect(url) as conn:
                migrate(conn)
            return url

    @cached_property
    def store(self) -> ObjectStore:
        from tiering.db.manifest import adopt_unnamed_bucket
        from tiering.store import open_store

        store = open_store(self.settings)
        if store.location.scheme == "file":  # before local stores recorded their root, they wrote ''
            with connect(self.database_url) as conn:
                adopt_unnamed_bucket(conn, store.location.bucket)
        return store

    def load_policy(self, policy_file: str | None = None) -> tuple[ArchivalPolicy, ArchivalConfig, str]:
        """The policy a run uses: a file if given, else the stored policy, else the defaults."""
        if policy_file:
            policy, config = load_policy_file(policy_file)
            return policy, config, f"file:{policy_file}"
        with connect(self.database_url) as conn:
            document = get_policy_document(conn)
        if document is not None:
            policy, config = policy_from_dict(document, source="stored policy")
            return policy, config, "stored"
        return ArchivalPolicy(), ArchivalConfig(), "defaults"
