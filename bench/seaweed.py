"""SeaweedFS for the bench: the same server the test suite starts (tests/fixtures_s3.py)."""

from tests.fixtures_s3 import seaweedfs_server

__all__ = ["seaweedfs_server"]
