"""tiering: tiered cold storage for Hammerwork job queues on PostgreSQL."""

from tiering import memory as _memory

__version__ = "0.1.0"

_memory.prefer_jemalloc_for_arrow()  # before anything loads pyarrow (tiering.memory)
