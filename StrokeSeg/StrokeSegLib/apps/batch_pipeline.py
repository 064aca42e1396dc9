"""Overlapping the stages of a batch run: read and prepare the next case while this one is predicted, write off the
critical path.

Three threads, joined by bounded queues so that at most ``prefetch`` prepared cases wait in memory::

    reader:  prepare(job)            -> ready queue (prefetch)
    caller:  predict(job)            -> done queue (1)
    writer:  finish(job); record(job)

Threads suffice because SimpleITK, numpy and torch release the GIL in their heavy loops. The caller's thread runs the
network, as in a sequential loop, so the numbers computed are the same. A stage that raises for one case marks that
job failed (``job.error``) and the job still reaches ``record``; :class:`CancelledError`, or an error in ``record``
itself, stops every thread and is raised here after they have all ended, so nothing hangs and nothing runs on.
"""
from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..common.errors import CancelledError, StrokeSegError
from ..common.progress import CancelToken, check_cancel

log = logging.getLogger(__name__)

_END = object()
_POLL_S = 0.1


class Job(Protocol):
    """What flows through the pipeline: ``settled`` jobs skip the remaining stages; ``error`` says why one failed."""

    settled: bool
    error: str


Stage = Callable[[Any], None]


def _guarded(stage: Stage, job: Any, name: str) -> None:
    """Run ``stage`` unless the job is settled; any error but a cancel fails the job, not the batch."""
    if job.settled:
        return
    try:
        stage(job)
    except CancelledError:
        raise
    except StrokeSegError as error:
        job.error, job.settled = str(error), True
    except Exception as error:
        log.error("%s failed unexpectedly:\n%s", name, traceback.format_exc())
        job.error, job.settled = f"{type(error).__name__}: {error}", True


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def run_stages(
    jobs: Sequence[Any],
    prepare: Stage,
    predict: Stage,
    finish: Stage,
    record: Stage,
    prefetch: int = 1,
    cancel: CancelToken | None = None,
    name: Callable[[Any], str] = str,
) -> None:
    """Take every job through prepare, predict, finish and record; ``prefetch=0`` runs them one after another."""
    if prefetch <= 0:
        for job in jobs:
            check_cancel(cancel)
            for stage in (prepare, predict, finish):
                _guarded(stage, job, name(job))
            record(job)
        return

    stop = threading.Event()
    fatal: list[BaseException] = []
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    done: queue.Queue = queue.Queue(maxsize=1)

    def fail(error: BaseException) -> None:
        fatal.append(error)
        stop.set()

    def reader() -> None:
        try:
            for job in jobs:
                if stop.is_set():
                    return
                check_cancel(cancel)
                _guarded(prepare, job, name(job))
                if not _put(ready, job, stop):
                    return
            _put(ready, _END, stop)
        except BaseException as error:
            fail(error)

    def writer() -> None:
        try:
            while (job := _get(done, stop)) is not _END:
                _guarded(finish, job, name(job))
                record(job)
        except BaseException as error:
            fail(error)

    threads = [threading.Thread(target=reader, name="strokeseg-read", daemon=True),
               threading.Thread(target=writer, name="strokeseg-write", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while (job := _get(ready, stop)) is not _END:
            check_cancel(cancel)
            _guarded(predict, job, name(job))
            if not _put(done, job, stop):
                break
        _put(done, _END, stop)
        threads[1].join()  # the writer drains what was predicted
    except BaseException as error:
        fail(error)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if fatal:
        raise fatal[0]
