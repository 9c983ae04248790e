"""azure.core exceptions → sync_core.domain.errors, at the adapters' boundary, so nothing above the
adapters ever sees an SDK exception."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError,
    ServiceRequestError, ServiceResponseError,
)
from azure.data.tables import TableTransactionError

from sync_core.domain.errors import (
    AlreadyExistsError, ConcurrencyError, InvalidRecordError, NotFoundError, StorageError, SyncError,
)

# Codes that mean the record itself cannot be stored as it is (quarantine it, don't retry).
_INVALID_RECORD_CODES = frozenset(
    {"PropertyValueTooLarge", "EntityTooLarge", "PropertyNameTooLong", "TooManyProperties", "InvalidInput",
     "InvalidValueType", "OutOfRangeInput", "KeyValueTooLarge", "InvalidDuplicateRow"}
)


def translate(exc: AzureError, what: str) -> SyncError:
    """One azure.core exception → the sync_core error the core understands."""
    status = getattr(exc, "status_code", None)
    raw_code = getattr(exc, "error_code", None)
    code = str(getattr(raw_code, "value", raw_code) or "")
    detail = f"{what}: storage answered {status} {code}".rstrip()
    if isinstance(exc, ResourceModifiedError) or status == 412:
        return ConcurrencyError(f"{what}: the entity changed since it was read (stale ETag)")
    # A single-entity create answers ResourceExistsError without an error_code; batches carry one.
    if isinstance(exc, ResourceExistsError) or (status == 409 and code in {"EntityAlreadyExists", "TableAlreadyExists"}):
        return AlreadyExistsError(f"{what}: the entity already exists")
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFoundError(f"{what}: not found")
    if status == 400 and code in _INVALID_RECORD_CODES:
        return InvalidRecordError(f"{what}: storage rejected the record ({code})")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageError(f"{what}: storage is unreachable ({type(exc).__name__})")
    if isinstance(exc, HttpResponseError):
        return StorageError(detail)
    return StorageError(f"{what}: {type(exc).__name__}")


def failed_op_index(exc: BaseException) -> int | None:
    """Which operation of a transaction was rejected, when `exc` came from `Table.transact`."""
    index = getattr(exc, "op_index", None)
    return index if isinstance(index, int) else None


@contextmanager
def storage_call(what: str) -> Iterator[None]:
    try:
        yield
    except TableTransactionError as exc:
        error = translate(exc, what)
        error.op_index = exc.index  # type: ignore[attr-defined]
        raise error from exc
    except AzureError as exc:
        raise translate(exc, what) from exc
