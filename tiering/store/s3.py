"""The S3 backend (AWS S3, MinIO, SeaweedFS, moto, any S3-compatible endpoint): the only boto3 code.

* Custom endpoints (AWS_ENDPOINT_URL) get path-style addressing and `when_required` checksums
  (boto3 >= 1.36 sends CRC checksums by default, which some S3-compatible servers reject).
* Retries: botocore "standard" mode (5xx, throttling, connection errors) with jittered backoff.
* Deadlines: each attempt is bounded by the connect and read timeouts, and no attempt starts once the
  call's deadline has passed, so an endpoint that accepts TCP and never answers fails within
  deadline + connect_timeout + read_timeout (settings TIERING_STORE_*), not after minutes of retries.
* Create-only uploads send `If-None-Match: *` (also on CompleteMultipartUpload); a 412 becomes
  ObjectExistsError.
* Every botocore error is translated into a StoreError that says what failed, where, and how to
  fix it, with `retryable` set for transient failures.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bce
from botocore.config import Config
from s3transfer.manager import TransferConfig, TransferManager

from tiering.errors import DeadlineExceededError, InvalidInputError, StoreError
from tiering.store.base import (
    ALL_STORAGE_CLASSES,
    ARCHIVE_STORAGE_CLASSES,
    RESTORE_TIERS,
    SHA256_METADATA_KEY,
    DeleteErrorItem,
    DeleteResult,
    ExternalAccess,
    LifecycleUnsupportedError,
    ObjectArchivedError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PutResult,
    RestoreOutcome,
    StoreCapabilities,
    StoreLocation,
    b64_to_hex,
    check_sha256,
    check_tail_length,
    hex_to_b64,
    sha256_file,
)

log = logging.getLogger(__name__)

DELETE_BATCH = 1000
_ACCESS_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
}
_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "BadDigest",
    "XAmzContentSHA256Mismatch",
    "OperationAborted",
}
_RESTORE_RE = re.compile(r'(\w[\w-]*)="([^"]*)"')


def _content_type(key: str) -> str:
    if key.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    if key.endswith(".json"):
        return "application/json"
    return "application/octet-stream"


def parse_restore_header(value: str | None) -> tuple[bool, datetime | None]:
    """(restore_in_progress, restored_until) from an `x-amz-restore` header."""
    if not value:
        return False, None
    fields = dict(_RESTORE_RE.findall(value))
    ongoing = fields.get("ongoing-request", "").lower() == "true"
    until = None
    if fields.get("expiry-date"):
        try:
            until = parsedate_to_datetime(fields["expiry-date"])
        except (TypeError, ValueError):
            until = None
    return ongoing, until


def _is_archived(storage_class: str, archive_status: str | None, ongoing: bool, until: datetime | None) -> bool:
    if storage_class not in ARCHIVE_STORAGE_CLASSES and not archive_status:
        return False
    if ongoing:
        return True
    return until is None or until <= datetime.now(UTC)


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    clean: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        k, v = str(k), str(v)
        if not k.isascii() or not v.isascii():
            raise InvalidInputError(
                f"object metadata {k!r}={v!r} is not ASCII: S3 metadata must be ASCII (encode it first)"
            )
        clean[k.lower()] = v
    return clean


class S3Store(ObjectStore):
    """A bucket (and key prefix) on an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        sse_bucket_key: bool = False,
        max_attempts: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        deadline: float = 30.0,
        multipart_threshold: int = 64 * 1024 * 1024,
        multipart_chunksize: int = 16 * 1024 * 1024,
        conditional_put: bool = True,
        storage_classes: Iterable[str] | None = None,
        list_restore_status: bool | None = None,
    ) -> None:
        if not bucket:
            raise InvalidInputError("S3 bucket name is empty")
        if sse not in (None, "AES256", "aws:kms"):
            raise InvalidInputError(f"sse must be AES256 or aws:kms, not {sse!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.sse_bucket_key = sse_bucket_key
        self.multipart_threshold = max(multipart_threshold, 5 * 1024 * 1024)
        self.multipart_chunksize = max(multipart_chunksize, 5 * 1024 * 1024)
        self._conditional_put = conditional_put
        self._storage_classes = frozenset(storage_classes) if storage_classes else ALL_STORAGE_CLASSES
        # AWS and moto answer the optional RestoreStatus list attribute; elsewhere it is noise.
        self._list_restore_status = self.endpoint_url is None if list_restore_status is None else list_restore_status
        self._lifecycle_supported: bool | None = None if self.endpoint_url else True
        self._count_lock = threading.Lock()
        self.deadline = deadline
        self._started = threading.local()  # when the current API call of this thread began
        self._create_only_keys: set[str] = set()
        self._object_lock_enabled = False  # learnt from the bucket; never unlearnt (S3 cannot turn it off)
        self.request_count = 0

        custom = self.endpoint_url is not None
        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            region_name=region,
        )
        self.region = region or session.region_name or "us-east-1"
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if custom else "auto"},
            retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},  # attempts, not retries
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=16,
            request_checksum_calculation="when_required" if custom else "when_supported",
            response_checksum_validation="when_required" if custom else "when_supported",
        )
        self.client: Any = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        self.client.meta.events.register("before-call.s3", self._start_call)
        self.client.meta.events.register("before-send.s3", self._check_deadline)
        self.client.meta.events.register("before-send.s3", self._count_request)
        self.client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", self._add_if_none_match)

    # --- hooks ---------------------------------------------------------------------------------
    def _start_call(self, **_: Any) -> None:
        self._started.at = time.monotonic()

    def _check_deadline(self, **_: Any) -> None:
        """Before each attempt (the first and every retry): none starts once the deadline has passed."""
        started = getattr(self._started, "at", None)
        if started is not None and time.monotonic() - started > self.deadline:
            raise DeadlineExceededError(
                f"no answer from {self.where} within the {self.deadline:g} s deadline (TIERING_STORE_DEADLINE); "
                "retries stopped. Check that the endpoint is up and reachable (AWS_ENDPOINT_URL)",
                retryable=True,
            )

    def _count_request(self, **_: Any) -> None:
        with self._count_lock:
            self.request_count += 1

    def _add_if_none_match(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") in self._create_only_keys:
            params["IfNoneMatch"] = "*"

    # --- description ---------------------------------------------------------------------------
    @property
    def location(self) -> StoreLocation:
        return StoreLocation("s3", self.bucket, self.prefix, self.endpoint_url, self.region)

    @property
    def url(self) -> str:
        return self.location.url

    def external_access(self, env: Mapping[str, str]) -> ExternalAccess:
        """A DuckDB `TYPE s3` secret: keys from the environment, this store's region and endpoint,
        scoped to the bucket. Athena reads the same location."""
        options: dict[str, str | bool] = {}
        sensitive: dict[str, str] = {}
        for option, var in (
            ("KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("SECRET", "AWS_SECRET_ACCESS_KEY"),
            ("SESSION_TOKEN", "AWS_SESSION_TOKEN"),
        ):
            if env.get(var):
                options[option] = env[var]
                if option != "KEY_ID":
                    sensitive[option] = f"<{var}>"
        options["REGION"] = self.region
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}")
            options["ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
            options["URL_STYLE"] = "path"
            options["USE_SSL"] = parts.scheme == "https"
        options["SCOPE"] = self.location.uri()
        return ExternalAccess("s3", options, sensitive, athena=True)

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def describe(self) -> str:
        return f"{self.url} at {self.where}"

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            supports_lifecycle=self._lifecycle_supported,
            encrypts=self.sse is not None,
            conditional_put=self._conditional_put,
            storage_classes=self._storage_classes,
            supports_restore=True,
        )

    # --- errors --------------------------------------------------------------------------------
    def _translate(self, exc: Exception, action: str, key: str | None = None) -> StoreError:
        """Turn a botocore exception into a StoreError that says what, where and how to fix."""
        what = f"{action} {key!r}" if key is not None else action
        where = self.describe()
        if isinstance(exc, DeadlineExceededError):
            return DeadlineExceededError(f"{what} failed: {exc}", retryable=True)
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", "")) or code
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "NoSuchBucket":
                return StoreError(
                    f"{what} failed: bucket {self.bucket!r} does not exist at {self.where}; create it "
                    "or fix TIERING_STORE_URL / AWS_ENDPOINT_URL"
                )
            if code in ("NoSuchKey", "404", "NotFound") and key is not None:
                return ObjectNotFoundError(key, where)
            if code == "InvalidObjectState" and key is not None:
                return ObjectArchivedError(key, where)
            if code in ("PreconditionFailed", "412") or status == 412:
                return ObjectExistsError(key or "", f"object {key!r} already exists in {where}")
            if code in _ACCESS_CODES or status == 403:
                return StoreError(
                    f"{what} failed: access denied by {where} ({code}: {message}). Check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the AWS profile) and that the IAM policy "
                    "grants this action on the bucket and prefix (see infra/iam-policy-example.json)"
                )
            if code in (
                "PermanentRedirect",
                "301",
                "AuthorizationHeaderMalformed",
                "IllegalLocationConstraintException",
            ):
                return StoreError(
                    f"{what} failed: bucket {self.bucket!r} is in another region than {self.region!r} "
                    f"({code}: {message}); set TIERING_S3_REGION / AWS_DEFAULT_REGION to the bucket's region"
                )
            if code == "InvalidStorageClass":
                return StoreError(
                    f"{what} failed: {where} does not accept this storage class ({message}). MinIO knows "
                    "only STANDARD and REDUCED_REDUNDANCY; change the policy's storage_class"
                )
            if code in ("KMS.NotFoundException", "KMS.DisabledException", "KMSKeyNotFound") or code.startswith("KMS"):
                return StoreError(
                    f"{what} failed: KMS key problem ({code}: {message}); check TIERING_SSE_KMS_KEY_ID and "
                    "that the role may use the key (kms:GenerateDataKey, kms:Decrypt)"
                )
            if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
                return StoreError(
                    f"{what} failed: {where} rejected the checksum ({code}): the data changed in transit; retry",
                    retryable=True,
                )
            retryable = code in _RETRYABLE_CODES or status >= 500 or status == 429
            hint = "; retried with backoff and still failing, try again later" if retryable else ""
            return StoreError(f"{what} failed at {where}: {code} (HTTP {status}): {message}{hint}", retryable=retryable)
        if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ProxyConnectionError)):
            return StoreError(
                f"{what} failed: cannot reach {self.where} ({exc}); check AWS_ENDPOINT_URL / "
                "TIERING_S3_ENDPOINT_URL, that the server is running, and the network",
                retryable=True,
            )
        if isinstance(
            exc,
            (bce.ReadTimeoutError, bce.ConnectionClosedError, bce.ResponseStreamingError, bce.IncompleteReadError),
        ):
            return StoreError(f"{what} failed: connection to {self.where} broke ({exc}); retry", retryable=True)
        if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
            return StoreError(
                f"{what} failed: no usable AWS credentials for {where} ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if isinstance(exc, bce.ParamValidationError):
            return StoreError(f"{what}: invalid request to {where} ({exc})")
        if isinstance(exc, bce.BotoCoreError):
            return StoreError(f"{what} failed at {where}: {exc}", retryable=True)
        return StoreError(f"{what} failed at {where}: {type(exc).__name__}: {exc}")

    # --- writing -------------------------------------------------------------------------------
    def _extra_args(
        self, key: str, storage_class: str | None, sha256: str, metadata: Mapping[str, str] | None
    ) -> dict[str, Any]:
        if storage_class is not None and storage_class not in ALL_STORAGE_CLASSES:
            raise InvalidInputError(
                f"unknown storage class {storage_class!r}; use one of {', '.join(sorted(ALL_STORAGE_CLASSES))}"
            )
        meta = _check_metadata(metadata)
        meta[SHA256_METADATA_KEY] = sha256
        args: dict[str, Any] = {"Metadata": meta, "ContentType": _content_type(key)}
        if storage_class and storage_class != "STANDARD":
            args["StorageClass"] = storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms":
                if self.sse_kms_key_id:
                    args["SSEKMSKeyId"] = self.sse_kms_key_id
                if self.sse_bucket_key:
                    args["BucketKeyEnabled"] = True
        return args

    def _result(
        self, key: str, size: int, sha256: str, storage_class: str | None, resp: Mapping[str, Any]
    ) -> PutResult:
        return PutResult(
            key=key,
            size=size,
            etag=resp.get("ETag"),
            checksum_sha256=sha256,
            version_id=resp.get("VersionId"),
            encryption=resp.get("ServerSideEncryption"),
            kms_key_id=resp.get("SSEKMSKeyId"),
            storage_class=storage_class or "STANDARD",
        )

    def _put_single(
        self,
        key: str,
        body: Any,
        size: int,
        sha256: str,
        args: dict[str, Any],
        create_only: bool,
        storage_class: str | None,
    ) -> PutResult:
        params = dict(args, Bucket=self.bucket, Key=key, Body=body, ChecksumSHA256=hex_to_b64(sha256))
        if create_only and self._conditional_put:
            params["IfNoneMatch"] = "*"
        elif create_only and self.head(key) is not None:
            raise ObjectExistsError(key, f"object {key!r} already exists in {self.describe()}")
        try:
            resp = self.client.put_object(**params)
        except Exception as exc:
            raise self._translate(exc, "upload", key) from exc
        return self._result(key, size, sha256, storage_class, resp)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        storage_class: str | None = None,
        sha256: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = True,
    ) -> PutResult:
        actual = hashlib.sha256(data).hexdigest()
        check_sha256(self, key, sha256, actual)
        args = self._extra_args(key, storage_class, actual, metadata)
        return self._put_single(key, data, len(data), actual, args, create_only, storage_class)

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        storage_class: str | None = None,
        sha256: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = True,
    ) -> PutResult:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise StoreError(f"cannot upload {key!r}: local file {path} unreadable ({exc})") from exc
        # Hash the local file even when the caller gave a digest: a wrong digest must fail here,
        # loudly, rather than depend on whether the server verifies x-amz-checksum-sha256.
        digest = sha256_file(path)
        check_sha256(self, key, sha256, digest, f"file {path}")
        args = self._extra_args(key, storage_class, digest, metadata)
        if size < self.multipart_threshold:
            # The server checks the data against ChecksumSHA256 (BadDigest when a given sha256 is wrong).
            with open(path, "rb") as fh:
                return self._put_single(key, fh, size, digest, args, create_only, storage_class)
        return self._put_multipart(key, path, size, digest, args, create_only, storage_class)

    def _put_multipart(
        self,
        key: str,
        path: str | Path,
        size: int,
        sha256: str,
        args: dict[str, Any],
        create_only: bool,
        storage_class: str | None,
    ) -> PutResult:
        """Large files: boto3's transfer manager, parallel parts each with a SHA-256 the server checks.
        The whole-file digest travels as metadata `sha256` (S3 has no full-object SHA-256 for MPU)."""
        if create_only and self.head(key) is not None:  # don't upload gigabytes only to get a 412
            raise ObjectExistsError(key, f"object {key!r} already exists in {self.describe()}")
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_request_concurrency=4,
        )
        extra = dict(args, ChecksumAlgorithm="SHA256")
        if create_only and self._conditional_put:
            self._create_only_keys.add(key)
        try:
            with TransferManager(self.client, config) as manager:
                manager.upload(str(path), self.bucket, key, extra_args=extra).result()
        except Exception as exc:
            raise self._translate(exc, "multipart upload", key) from exc
        finally:
            self._create_only_keys.discard(key)
        info = self.head(key)
        if info is None:
            raise StoreError(
                f"multipart upload of {key!r} to {self.describe()} finished but the object is missing", retryable=True
            )
        if info.size != size:
            raise StoreError(
                f"multipart upload of {key!r} to {self.describe()}: stored size {info.size} != local size {size}",
                retryable=True,
            )
        return PutResult(
            key=key,
            size=size,
            etag=info.etag,
            checksum_sha256=sha256,
            version_id=info.version_id,
            encryption=info.encryption,
            kms_key_id=info.kms_key_id,
            storage_class=storage_class or "STANDARD",
        )

    # --- reading -------------------------------------------------------------------------------
    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or end < start:
                raise InvalidInputError(f"invalid byte range {byte_range!r} for {key!r} (start <= end, >= 0)")
            if end == start:
                return b""
            params["Range"] = f"bytes={start}-{end - 1}"
        try:
            return self._read_whole(key, params)[0]
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._translate(exc, "read", key) from exc

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        """One GET of a suffix range; the object's size is the total of its Content-Range (or the body's length
        when the server answers 200 with the whole object)."""
        check_tail_length(key, length)
        try:
            data, resp = self._read_whole(key, {"Bucket": self.bucket, "Key": key, "Range": f"bytes=-{length}"})
        except bce.ClientError as exc:
            raise self._translate(exc, "read", key) from exc
        total = str(resp.get("ContentRange") or "").rpartition("/")[2]
        size = int(total) if total.isdigit() else len(data)
        if len(data) != min(length, size):
            raise StoreError(
                f"short read of the last {length} bytes of {key!r} in {self.describe()}: got {len(data)} of an "
                f"object of {size} bytes",
                retryable=True,
            )
        return data, size

    def _read_whole(self, key: str, params: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """One GetObject read to its end: (body, response). botocore retries the request; this retries a body
        stream that broke off (3 attempts within the store's deadline). A ClientError is the caller's to read."""
        last: Exception | None = None
        started = time.monotonic()
        for attempt in range(3):
            if attempt and time.monotonic() - started > self.deadline:
                break
            try:
                resp = self.client.get_object(**params)
                return bytes(resp["Body"].read()), resp
            except (bce.ResponseStreamingError, bce.IncompleteReadError, bce.ReadTimeoutError) as exc:
                last = exc
            except bce.ClientError:
                raise
            except Exception as exc:
                raise self._translate(exc, "read", key) from exc
        assert last is not None
        raise self._translate(last, "read", key) from last

    def get_stream(self, key: str, byte_range: tuple[int, int], piece: int = 256 * 1024) -> Iterator[bytes]:
        """One ranged GET whose body is handed on piece by piece as it arrives. A body that breaks off is resumed
        from its first missing byte by a new ranged GET (twice at most, within the store's deadline), so the pieces
        always join up to the range (clipped at the object's end)."""
        start, end = byte_range
        if start < 0 or end < start:
            raise InvalidInputError(f"invalid byte range {byte_range!r} for {key!r} (start <= end, >= 0)")
        pos, breaks, started = start, 0, time.monotonic()
        while pos < end:
            try:
                resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={pos}-{end - 1}")
            except bce.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return
                raise self._translate(exc, "read", key) from exc
            except Exception as exc:
                raise self._translate(exc, "read", key) from exc
            body = resp["Body"]
            try:
                while pos < end:
                    try:
                        data = body.read(min(piece, end - pos))
                    except (bce.ResponseStreamingError, bce.IncompleteReadError, bce.ReadTimeoutError) as exc:
                        breaks += 1
                        if breaks > 2 or time.monotonic() - started > self.deadline:
                            raise self._translate(exc, "read", key) from exc
                        break  # resume from pos with a new request
                    if not data:
                        return  # the object ends before `end`
                    pos += len(data)
                    yield data
            finally:
                body.close()

    def head(self, key: str) -> ObjectInfo | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._translate(exc, "head", key) from exc
        except Exception as exc:
            raise self._translate(exc, "head", key) from exc
        sclass = resp.get("StorageClass") or "STANDARD"
        ongoing, until = parse_restore_header(resp.get("Restore"))
        metadata = dict(resp.get("Metadata") or {})
        # Our own `sha256` metadata first: for multipart objects the server's SHA-256 is a checksum
        # of part checksums (not always marked "-N"); single-part uploads had it verified by the server.
        checksum = metadata.get(SHA256_METADATA_KEY) or (
            b64_to_hex(resp.get("ChecksumSHA256")) if resp.get("ChecksumType") != "COMPOSITE" else None
        )
        hold = resp.get("ObjectLockLegalHoldStatus")
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", 0)),
            etag=resp.get("ETag"),
            storage_class=sclass,
            last_modified=resp.get("LastModified"),
            archived=_is_archived(sclass, resp.get("ArchiveStatus"), ongoing, until),
            restore_in_progress=ongoing,
            restored_until=until,
            encryption=resp.get("ServerSideEncryption"),
            kms_key_id=resp.get("SSEKMSKeyId"),
            bucket_key_enabled=resp.get("BucketKeyEnabled"),
            checksum_sha256=checksum,
            version_id=resp.get("VersionId"),
            metadata=metadata,
            object_lock_mode=resp.get("ObjectLockMode"),
            object_lock_retain_until=resp.get("ObjectLockRetainUntilDate"),
            object_lock_legal_hold=None if hold is None else hold == "ON",
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if self._list_restore_status:
            params["OptionalObjectAttributes"] = ["RestoreStatus"]
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**params):
                for item in page.get("Contents", []) or []:
                    sclass = item.get("StorageClass") or "STANDARD"
                    status = item.get("RestoreStatus") or {}
                    ongoing = bool(status.get("IsRestoreInProgress", False))
                    until = status.get("RestoreExpiryDate")
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item.get("Size", 0)),
                        etag=item.get("ETag"),
                        storage_class=sclass,
                        last_modified=item.get("LastModified"),
                        archived=_is_archived(sclass, None, ongoing, until),
                        restore_in_progress=ongoing,
                        restored_until=until,
                    )
        except Exception as exc:
            raise self._translate(exc, f"list prefix {prefix!r}") from exc

    def object_lock_possible(self) -> bool:
        """One GetObjectLockConfiguration instead of a HEAD per object: a bucket without Object Lock (the server
        answers ObjectLockConfigurationNotFoundError) holds no retained or held object. Asked again every time
        until it says Enabled (a bucket can get Object Lock later, never lose it); a bucket that cannot be asked
        (no permission, not implemented) counts as locked, so each object is checked as before."""
        if self._object_lock_enabled:
            return True
        try:
            resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ObjectLockConfigurationNotFoundError":
                return False
            log.info("cannot read the Object Lock configuration of %s (%s): checking each object", self.url, code)
            return True
        except Exception as exc:  # noqa: BLE001 - unknown: check each object (their HEADs report any failure)
            log.info("cannot read the Object Lock configuration of %s (%s): checking each object", self.url, exc)
            return True
        # Only the "no configuration" answer above proves there is no lock; any configuration counts as one.
        self._object_lock_enabled = (resp.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") == "Enabled"
        return True

    # --- deleting ------------------------------------------------------------------------------
    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        result = DeleteResult()
        batch: builtins.list[str] = []
        failed: StoreError | None = None
        for key in keys:
            if failed is not None:
                result.errors.append(DeleteErrorItem(key, "NotAttempted", f"an earlier batch failed: {failed}"))
                continue
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                failed = self._delete_batch(batch, result)
                batch = []
        if batch and failed is None:
            self._delete_batch(batch, result)
        return result

    def _delete_batch(self, batch: builtins.list[str], result: DeleteResult) -> StoreError | None:
        try:
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        except Exception as exc:
            err = self._translate(exc, f"delete {len(batch)} objects")
            code = type(err).__name__
            if isinstance(exc, bce.ClientError):
                code = str(exc.response.get("Error", {}).get("Code", code))
            result.errors.extend(DeleteErrorItem(k, code, str(err)) for k in batch)
            return err
        errors = {}
        for item in resp.get("Errors", []) or []:
            errors[item.get("Key", "")] = DeleteErrorItem(
                item.get("Key", ""), str(item.get("Code", "")), str(item.get("Message", ""))
            )
        for k in batch:
            if k in errors:
                result.errors.append(errors[k])
            else:
                result.deleted.append(k)
        return None

    # --- lifecycle / archive -------------------------------------------------------------------
    def _lifecycle_error(self, exc: Exception, action: str, rules: builtins.list[dict[str, Any]] | None) -> StoreError:
        if isinstance(exc, bce.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NotImplemented", "NotImplementedError", "501"):
                self._lifecycle_supported = False
                has_transitions = any(
                    r.get("Transitions") or r.get("NoncurrentVersionTransitions") for r in rules or []
                )
                what = "lifecycle rules with storage-class transitions" if has_transitions else "lifecycle rules"
                return LifecycleUnsupportedError(
                    f"{self.where} does not implement {what} (answered NotImplemented to {action} on "
                    f"bucket {self.bucket!r}); schedule `tiering purge` for expiration instead"
                )
        return self._translate(exc, action)

    def get_lifecycle_rules(self) -> builtins.list[dict[str, Any]]:
        try:
            resp = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise self._lifecycle_error(exc, "GetBucketLifecycleConfiguration", None) from exc
        except Exception as exc:
            raise self._translate(exc, "get lifecycle rules") from exc
        return builtins.list(resp.get("Rules", []) or [])

    def put_lifecycle_rules(self, rules: builtins.list[dict[str, Any]]) -> None:
        if len(rules) > 1000:
            raise InvalidInputError(f"{len(rules)} lifecycle rules: S3 allows at most 1000 per bucket")
        try:
            if rules:
                self.client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
                )
            else:
                self.client.delete_bucket_lifecycle(Bucket=self.bucket)
        except bce.ClientError as exc:
            raise self._lifecycle_error(exc, "PutBucketLifecycleConfiguration", rules) from exc
        except Exception as exc:
            raise self._translate(exc, "put lifecycle rules") from exc
        if self.endpoint_url is not None:
            self._lifecycle_supported = True

    def restore_object(self, key: str, days: int = 1, tier: str = "Standard") -> RestoreOutcome:
        if tier not in RESTORE_TIERS:
            raise InvalidInputError(f"restore tier {tier!r}: use one of {', '.join(sorted(RESTORE_TIERS))}")
        if days < 1:
            raise InvalidInputError(f"restore days must be >= 1, not {days}")
        try:
            resp = self.client.restore_object(
                Bucket=self.bucket,
                Key=key,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
            )
        except bce.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "RestoreAlreadyInProgress":
                return "in_progress"
            if code == "InvalidObjectState":
                return "not_archived"
            raise self._translate(exc, "restore", key) from exc
        except Exception as exc:
            raise self._translate(exc, "restore", key) from exc
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return "already_restored" if status == 200 else "started"

    # --- setup ---------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except bce.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._translate(exc, "check bucket") from exc
        except Exception as exc:
            raise self._translate(exc, "check bucket") from exc
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**params)
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",):
                raise self._translate(exc, f"create bucket {self.bucket!r}") from exc
        except Exception as exc:
            raise self._translate(exc, f"create bucket {self.bucket!r}") from exc

    def check_access(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(
                    f"bucket {self.bucket!r} does not exist at {self.where}; create it (infra/docker-compose.yml "
                    "creates one for MinIO) or fix TIERING_STORE_URL"
                ) from exc
            raise self._translate(exc, "access bucket") from exc
        except Exception as exc:
            raise self._translate(exc, "access bucket") from exc
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:
            raise self._translate(exc, f"list {self.url}") from exc
