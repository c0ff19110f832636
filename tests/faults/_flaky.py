"""A flaky store for the ``tests/faults`` suite: a real fsspec filesystem whose reads fail for a while.

:class:`FlakyFileSystem` is fsspec's ``LocalFileSystem`` under the ``flaky://``
protocol: opening a chosen file for reading raises ``ConnectionResetError``
(an ``OSError``, as a dropped connection to an object store does) the first
``fail_times`` times, then works. Every attempt is counted in a file under
``state_dir`` (``O_APPEND`` writes), so the count is shared by the driver and
every worker process, and tests can say exactly how often a file was tried.

It lives in an importable module so that Dask workers load it by reference;
:class:`RegisterFlaky` registers the protocol in every worker process.
"""

from __future__ import annotations

import hashlib
import os

import fsspec
from distributed import WorkerPlugin
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "flaky"
LISTING = "<listing>"  # the key under which listings are counted


class FlakyFileSystem(LocalFileSystem):
    """Local files whose reads fail with ``ConnectionResetError`` the first ``fail_times`` times.

    Parameters
    ----------
    state_dir : str
        Where attempts are counted (one file per data file).
    fail_times : int
        Failed opens per matching file before opens succeed.
    fail_match : str
        Only files whose path contains this fail (default: every file).
    workers_only : bool
        Fail only inside Dask worker tasks (the driver's own reads, such as
        footers and the schema, always succeed and are not counted).
    fail_listings : int
        Failed directory listings (``ls``, which ``glob`` and ``find`` use),
        anywhere, before listings succeed; counted under the path ``LISTING``.
    """

    protocol = (PROTOCOL,)

    def __init__(self, state_dir: str, fail_times: int = 0, fail_match: str = "", workers_only: bool = True,
                 fail_listings: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.state_dir, self.fail_times = state_dir, int(fail_times)
        self.fail_match, self.workers_only = fail_match, workers_only
        self.fail_listings = int(fail_listings)

    def ls(self, path, detail=False, **kw):
        if self.fail_listings and _count(self.state_dir, LISTING, "attempts") <= self.fail_listings:
            _count(self.state_dir, LISTING, "failures")
            raise ConnectionResetError(f"connection reset by peer while listing {path}")
        return super().ls(path, detail=detail, **kw)

    def _open(self, path, mode="rb", **kw):
        if "r" in mode and self.fail_match in str(path) and (not self.workers_only or _in_worker()):
            attempt = _count(self.state_dir, str(path), "attempts")
            if attempt <= self.fail_times:
                _count(self.state_dir, str(path), "failures")
                raise ConnectionResetError(f"connection reset by peer while reading {path} (attempt {attempt})")
        return super()._open(path, mode=mode, **kw)


def _in_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _count(state_dir: str, path: str, kind: str) -> int:
    """Add one to the ``kind`` count of ``path`` and return the new count (atomic across processes)."""
    name = os.path.join(state_dir, f"{hashlib.sha1(path.encode()).hexdigest()}.{kind}")
    fd = os.open(name, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    return os.path.getsize(name)


def counted(state_dir: str, path: str, kind: str = "failures") -> int:
    """How many ``kind`` (``attempts`` or ``failures``) the flaky store counted for the local file ``path``."""
    name = os.path.join(state_dir, f"{hashlib.sha1(str(path).encode()).hexdigest()}.{kind}")
    return os.path.getsize(name) if os.path.exists(name) else 0


def register() -> None:
    fsspec.register_implementation(PROTOCOL, FlakyFileSystem, clobber=True)


class RegisterFlaky(WorkerPlugin):
    """Register ``flaky://`` in every worker process, present and future."""

    name = "etl-faults-flaky-store"

    def setup(self, worker) -> None:
        register()
