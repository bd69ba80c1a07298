"""S3 servers for the test suite (filled in by the object-store work)."""
