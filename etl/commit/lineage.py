"""Lineage written into every commit: who wrote what from what.

Everything here ends up in the Delta log, readable by anyone who can read the
table, so it holds no credentials: URLs are redacted and storage options are
never included.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

PREFIX = "etl."


def new_run_id() -> str:
    """A unique, time-sortable run id: ``rYYYYMMDDTHHMMSS-<8 hex>`` (UTC). Staged file names carry it."""
    import secrets
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("r%Y%m%dT%H%M%S-") + secrets.token_hex(4)


@lru_cache(maxsize=32)
def code_version(module_file: str | None) -> str:
    """The git commit of the folder holding ``module_file`` (``+dirty`` if changed), or ``unknown``."""
    folder = Path(module_file).parent if module_file else Path.cwd()
    try:
        sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("ETL_CODE_VERSION", "unknown")


def commit_metadata(*, run_id: str, pipeline: str, batch: str, app_id: str, params: dict,
                    sources: list[dict], counts: dict, module_file: str | None,
                    operation: str, fingerprint: str | None = None,
                    fingerprint_delta: int | None = None) -> dict[str, str]:
    """The ``custom_metadata`` of a data commit (flat keys, string values).

    ``fingerprint`` is the batch's content fingerprint (see :func:`etl.kernels.fingerprint`);
    ``fingerprint_delta`` is how the commit changes the table's content fingerprint
    (rows added minus rows removed, mod 2**64), which ``etl verify`` adds up.
    """
    from etl import __version__

    return {
        f"{PREFIX}run_id": run_id,
        f"{PREFIX}pipeline": pipeline,
        f"{PREFIX}batch": batch,
        f"{PREFIX}app_id": app_id,
        f"{PREFIX}operation": operation,
        f"{PREFIX}code_version": code_version(module_file),
        f"{PREFIX}framework_version": __version__,
        f"{PREFIX}params": json.dumps(params, sort_keys=True, default=str),
        f"{PREFIX}sources": json.dumps(sources, sort_keys=True),
        f"{PREFIX}rows": json.dumps(counts, sort_keys=True),
        **({f"{PREFIX}fingerprint": fingerprint} if fingerprint else {}),
        **({f"{PREFIX}fingerprint_delta": f"{fingerprint_delta % (1 << 64):016x}"}
           if fingerprint_delta is not None else {}),
    }


def read_lineage(entry: dict) -> dict:
    """The etl lineage of one ``DeltaTable.history()`` entry (empty if it is not ours)."""
    out = {}
    for key, value in entry.items():
        if key.startswith(PREFIX):
            name = key[len(PREFIX):]
            out[name] = json.loads(value) if name in ("params", "sources", "rows") else value
    return out
