"""The engine: archive, flush, restore, query, purge, erase, verify, lifecycle. No CLI or HTTP here."""
