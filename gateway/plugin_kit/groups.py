"""Choosing the one exception to raise from a failed ``asyncio.TaskGroup`` of storage requests.

A multipart upload runs its parts in a task group; when parts fail, the caller (and the
export's error mapping) wants the failure that says what happened to the store, not the
``CancelledError`` of a sibling part or the group wrapper itself.
"""

from __future__ import annotations

from gateway.storage import StorageError


def most_telling(failures: BaseExceptionGroup) -> BaseException:
    """The exception to re-raise from a failed group of part requests: a StorageError first,
    then any other Exception, then whatever came first."""
    flat: list[BaseException] = []

    def walk(group: BaseExceptionGroup) -> None:
        for exc in group.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)

    walk(failures)
    for kind in (StorageError, Exception):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0]
