"""Recording a run in the ledger: started, heartbeats while it works, then succeeded or failed.

The ledger (``<warehouse>/_etl_ledger``) is what ``etl status``, ``etl history``,
``etl backfill`` resume and ``etl verify`` read. A run's lease is short and kept
alive by a heartbeat thread, so a killed driver's batch becomes resumable
within one lease, not hours later.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from etl.ledger import Event, TransitionError
from etl.ledger.store import Ledger

log = logging.getLogger("etl.ledger")


def lease_seconds() -> float:
    return float(os.environ.get("ETL_LEASE_SECONDS", 120))


class RunRecorder:
    """The ledger side of one run of one batch.

    Parameters
    ----------
    plan : Plan
    run_id, app_id : str
    backfill_id : str, optional
    takeover : bool
        Start even though another run's lease on this batch is live.
    """

    def __init__(self, plan, run_id: str, app_id: str, backfill_id: str | None = None,
                 takeover: bool = False) -> None:
        self.pipeline, self.batch = plan.pipeline.name, plan.batch
        self.run_id, self.app_id, self.backfill_id, self.takeover = run_id, app_id, backfill_id, takeover
        self.lease = timedelta(seconds=lease_seconds())
        self.ledger = Ledger(plan.warehouse, plan.pipeline.target.storage_options, lease=self.lease)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _kw(self) -> dict:
        return {"app_id": self.app_id, "backfill_id": self.backfill_id}

    def started(self) -> None:
        """Record the start and keep the lease alive until :meth:`stop`.

        Raises
        ------
        TransitionError
            Another run holds a live lease on this batch (the message says which and until when).
        """
        self.ledger.record(Event.started(self.pipeline, self.batch, self.run_id, takeover=self.takeover,
                                         **self._kw()))
        self._thread = threading.Thread(target=self._beat, name=f"etl-heartbeat-{self.run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.ledger.record(Event.heartbeat(self.pipeline, self.batch, self.run_id, **self._kw()))
            except TransitionError as exc:  # another run took the batch over: stop beating
                log.warning("heartbeat of %s refused: %s", self.run_id, exc)
                return
            except Exception as exc:  # a store hiccup: try again at the next beat
                log.warning("heartbeat of %s failed: %s", self.run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def succeeded(self, rows: dict, version: int | None, fingerprint: str | None = None) -> None:
        self.stop()
        self._terminal(Event.succeeded(self.pipeline, self.batch, self.run_id, rows=rows, version=version,
                                       fingerprint=fingerprint, **self._kw()))

    def failed(self, exc: BaseException) -> None:
        self.stop()
        try:
            self._terminal(Event.failed(self.pipeline, self.batch, self.run_id, error=exc, **self._kw()))
        except Exception as err:  # never hide the run's own error behind the ledger's
            log.warning("could not record the failure of %s in the ledger: %s", self.run_id, err)

    def already_committed(self, version: int, fingerprint: str | None = None) -> None:
        """A rerun found its batch committed: make sure the ledger says so too (repairs a lost record)."""
        state = self.ledger.state(self.pipeline, self.batch)
        if state is not None and state.state == "succeeded" and state.app_id == self.app_id:
            return
        try:
            self.ledger.record_all([
                Event.started(self.pipeline, self.batch, self.run_id, takeover=True, **self._kw()),
                Event.succeeded(self.pipeline, self.batch, self.run_id, version=version, fingerprint=fingerprint,
                                **self._kw())])
        except TransitionError as exc:
            log.warning("ledger not repaired for %s: %s", self.batch, exc)

    def _terminal(self, event: Event) -> None:
        try:
            self.ledger.record(event)
        except TransitionError as exc:
            if getattr(exc, "superseded", False):
                log.warning("run %s was superseded in the ledger: %s", self.run_id, exc)
                return
            raise
