"""Bounded retries with exponential backoff and full jitter, and which failures deserve one.

Pure decision logic: no clock, no I/O. :meth:`RetryPolicy.decide` says, after a
failed attempt, whether to try again and how long to wait first; the caller
sleeps (tests pass a seeded ``random.Random`` and a recording ``sleep``).

Where retries happen, all driven by one policy (:func:`effective`: the one
given to the call, else the pipeline's ``retry=``, else the environment):

- **per task**: a source file read, or a read or write of one of the table's
  files, that hits a transient I/O error (:func:`is_transient_io`) is retried
  inside its Dask task (:func:`retry_call`);
- **per batch**: a backfill retries a batch that failed transiently
  (:func:`is_transient`);
- **per commit**: a conflicting commit is retried by the commit loop.

Examples
--------
>>> import random
>>> p = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=2.0)
>>> [round(p.cap(a), 2) for a in range(4)]
[0.5, 1.0, 2.0, 2.0]
>>> 0 <= p.delay(3, random.Random(1)) <= 2.0
True
>>> d = p.decide(0, ConnectionResetError("peer reset"), random.Random(1), transient=is_transient_io)
>>> d.retry, 0 <= d.delay <= 0.5
(True, True)
>>> p.decide(0, FileNotFoundError("gone"), transient=is_transient_io).retry
False
>>> p.decide(3, TimeoutError("slow"), transient=is_transient_io).retry  # the 4th attempt was the last
False
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from etl.errors import ClusterError, CommitError, ConfigError, ContractError, EtlError, SchemaError, SourceError

#: Failures of a batch that a retry cannot fix: bad data, bad declarations, unreadable input.
PERMANENT = (SchemaError, ContractError, ConfigError, SourceError)
#: Foreign errors of a lost cluster or a conflicting commit, known by name (their packages are optional here).
TRANSIENT_NAMES = frozenset({"KilledWorker", "CommClosedError", "CommitFailedError"})
#: I/O errors that say the file is not there or not ours to read: trying again reads nothing more.
NOT_TRANSIENT_IO = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
#: Network errors of object-store clients that do not derive from OSError (aiohttp, botocore, urllib3 ...).
TRANSIENT_IO_NAMES = frozenset({
    "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError", "EndpointConnectionError",
    "ConnectTimeoutError", "ReadTimeoutError", "ResponseStreamingError", "IncompleteRead", "ProtocolError",
    "ChunkedEncodingError", "ServiceUnavailable", "TooManyRequests", "InternalServerError", "BadGateway",
    "GatewayTimeout"})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed *batch* is worth running again.

    I/O errors, a lost cluster and commit conflicts are; bad data, bad
    declarations, unreadable input and bad code (any other exception) are not.

    Examples
    --------
    >>> is_transient(ClusterError("lost")), is_transient(SchemaError("bad column")), is_transient(KeyError("x"))
    (True, False, False)
    """
    if isinstance(exc, PERMANENT):
        return False
    return isinstance(exc, (ClusterError, CommitError, OSError, TimeoutError)) or \
        type(exc).__name__ in TRANSIENT_NAMES


def is_transient_io(exc: BaseException) -> bool:
    """Whether one failed I/O call (reading a source file) is worth making again.

    Timeouts, dropped connections and other ``OSError`` are; a missing file,
    a refused permission or a directory are not, nor is anything the
    framework raised on purpose (:class:`~etl.errors.EtlError`) or any other
    exception (a parser's error is the file's content, not the network's).
    Network errors of object-store clients that do not derive from
    ``OSError`` count by class name, here or in the chain of causes.

    Examples
    --------
    >>> is_transient_io(TimeoutError()), is_transient_io(OSError(5, "I/O error"))
    (True, True)
    >>> is_transient_io(FileNotFoundError("x")), is_transient_io(ValueError("not a parquet file"))
    (False, False)
    """
    for e in _chain(exc):
        if isinstance(e, EtlError):
            return False
        if isinstance(e, (TimeoutError, ConnectionError)):
            return True
        if isinstance(e, OSError):
            return not isinstance(e, NOT_TRANSIENT_IO)
        if type(e).__name__ in TRANSIENT_IO_NAMES:
            return True
    return False


def _chain(exc: BaseException, depth: int = 5) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and len(out) < depth and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@dataclass(frozen=True)
class Decision:
    """What to do after failed attempt ``attempt`` (0-based): try again after ``delay`` seconds, or give up.

    ``reason`` says why in a few words (``"transient"``, ``"permanent"``, ``"attempts exhausted"``).
    """

    retry: bool
    delay: float
    attempt: int
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    Parameters
    ----------
    max_attempts : int
        Total attempts, the first included (>= 1).
    base_delay : float
        Seconds; the cap of the first backoff.
    max_delay : float
        Seconds; no backoff is ever longer.
    """

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ConfigError(f"invalid retry policy {self}: need max_attempts >= 1 and "
                              "0 <= base_delay <= max_delay.")

    def cap(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.max_delay, self.base_delay * (2 ** min(attempt, 64)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in ``[0, cap(attempt)]``."""
        return (rng or random).uniform(0.0, self.cap(attempt))

    def gives_up_after(self, attempt: int) -> bool:
        """True when attempt ``attempt`` (0-based) was the last allowed."""
        return attempt + 1 >= self.max_attempts

    def decide(self, attempt: int, exc: BaseException, rng: random.Random | None = None,
               transient: Callable[[BaseException], bool] = is_transient) -> Decision:
        """Whether to retry after attempt ``attempt`` (0-based) failed with ``exc``, and after how long.

        Parameters
        ----------
        attempt : int
            The attempt that just failed, 0 for the first.
        exc : BaseException
            Its error.
        rng : random.Random, optional
            The jitter's source (seed it for reproducible delays).
        transient : callable
            The classifier: :func:`is_transient` for batches (default),
            :func:`is_transient_io` for one I/O call.

        Returns
        -------
        Decision
            ``retry`` only for a transient error with attempts left; ``delay``
            is then in ``[0, cap(attempt)]``, else 0.
        """
        if not transient(exc):
            return Decision(False, 0.0, attempt, "permanent")
        if self.gives_up_after(attempt):
            return Decision(False, 0.0, attempt, "attempts exhausted")
        return Decision(True, self.delay(attempt, rng), attempt, "transient")

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """The policy set by ``ETL_RETRY_MAX_ATTEMPTS``, ``ETL_RETRY_BASE_DELAY``, ``ETL_RETRY_MAX_DELAY``."""
        d = cls()
        return cls(int(os.environ.get("ETL_RETRY_MAX_ATTEMPTS", d.max_attempts)),
                   float(os.environ.get("ETL_RETRY_BASE_DELAY", d.base_delay)),
                   float(os.environ.get("ETL_RETRY_MAX_DELAY", d.max_delay)))


def retry_call(call: Callable[[], Any], policy: RetryPolicy, *,
               transient: Callable[[BaseException], bool] = is_transient_io,
               on_retry: Callable[[BaseException, Decision], None] | None = None,
               on_give_up: Callable[[BaseException, Decision], BaseException | None] | None = None,
               sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> Any:
    """``call()``, made again after each transient failure as ``policy`` decides.

    The loop alone: the caller says what is transient, what to log before a
    retry (``on_retry``) and what to raise when it gives up (``on_give_up``
    returns an exception to raise instead of the last error, or None to
    re-raise that error). ``sleep`` and ``rng`` are injected by tests.

    Examples
    --------
    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise TimeoutError("slow")
    ...     return "done"
    >>> waits = []
    >>> retry_call(flaky, RetryPolicy(5, 0.1, 1.0), sleep=waits.append), len(tries), len(waits)
    ('done', 3, 2)
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            decision = policy.decide(attempt, exc, rng, transient=transient)
            if not decision.retry:
                replacement = on_give_up(exc, decision) if on_give_up else None
                if replacement is not None:
                    raise replacement from None
                raise
            if on_retry:
                on_retry(exc, decision)
            sleep(decision.delay)
            attempt += 1


def effective(explicit: RetryPolicy | None = None, pipeline: RetryPolicy | None = None) -> RetryPolicy:
    """The policy that applies: the one passed to the call, else the pipeline's, else :meth:`RetryPolicy.from_env`.

    Examples
    --------
    >>> effective(None, RetryPolicy(max_attempts=2)).max_attempts
    2
    >>> effective(RetryPolicy(max_attempts=5), RetryPolicy(max_attempts=2)).max_attempts
    5
    """
    return explicit or pipeline or RetryPolicy.from_env()
