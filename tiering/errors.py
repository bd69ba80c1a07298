"""One error tree for the whole tool. Each error knows its exit code, and whether retrying may help."""

from __future__ import annotations


class TieringError(Exception):
    """Base of every error tiering raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1
    http_status = 500
    retryable = False


class ConfigError(TieringError):
    """Bad settings, policy file or command-line input: nothing was changed."""

    exit_code = 2
    http_status = 400


class InvalidInputError(ConfigError):
    """A malformed argument (UUID, date, key, ...)."""


class NotFoundError(TieringError):
    exit_code = 3
    http_status = 404


class ConflictError(TieringError):
    """The request contradicts the current state (already restored, still in the hot table, ...)."""

    exit_code = 4
    http_status = 409


class PendingError(TieringError):
    """The work has started but cannot finish yet (e.g. a GLACIER object being restored)."""

    exit_code = 5
    http_status = 202


class SafetyAbort(TieringError):
    """A safety cap or a missing confirmation stopped a destructive operation before it began."""

    exit_code = 6
    http_status = 409


class StoreError(TieringError):
    """The object store failed; `retryable` says whether a later attempt may succeed."""

    exit_code = 7
    http_status = 502

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeadlineExceededError(StoreError):
    """A store call got no answer within its deadline (settings store_deadline, TIERING_STORE_DEADLINE)."""


class DatabaseError(TieringError):
    exit_code = 8
    http_status = 503


class VerificationError(TieringError):
    """verify found the manifest and the bucket disagree."""

    exit_code = 9
    http_status = 500


class CorruptPayloadError(TieringError):
    """One job's stored payload cannot be decoded or parsed (bad gzip or zstd, not UTF-8, nested too deep,
    NaN): that job is reported, the rest of a bulk operation goes on."""

    exit_code = 10
    http_status = 422


class OperationTimeout(TieringError):
    """A request-bounded operation (a search served by the API) ran past its deadline and stopped."""

    exit_code = 7
    http_status = 503
    retryable = True
