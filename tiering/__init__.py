"""tiering: tiered cold storage for Hammerwork job queues on PostgreSQL."""

__version__ = "0.1.0"
