"""Locations on local disk or object stores, and keeping credentials out of sight.

:class:`Location` ties a URL to its fsspec filesystem and to the storage
options deltalake needs. One ``storage_options`` dict serves both: give it in
fsspec form (``endpoint_url``, ``key``, ``secret``,
``client_kwargs={"region_name": ...}``) or in deltalake form
(``AWS_ENDPOINT_URL``, ``AWS_REGION`` ...); :mod:`etl.io.stores` translates.

Where credentials live, and where they never go:

- Best: in the environment of the driver and of every Dask worker
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``,
  ``AZURE_STORAGE_ACCOUNT_KEY`` ...) or in an instance role. A Location reads
  the environment only when it builds a filesystem or deltalake options and
  stores nothing from it, so it can be pickled, put in a task graph or logged.
- Possible: in ``storage_options``. They are never shown (``repr``/``str``
  print the redacted URL only), logged or committed, but they do travel inside
  the Dask task graph to the workers that need them, as with any Dask
  ``storage_options``: anyone who can read the scheduler's graph can read them.
- Never in code, in URLs (``s3://key:secret@...`` is redacted, not supported),
  in log lines, in commit metadata or in error messages: :func:`redact` strips
  URLs, :func:`redact_text` masks known secret values in any text.

Examples
--------
>>> redact("s3://AKIA:secret@bucket/path?X-Amz-Signature=abc")
's3://bucket/path'
>>> Location("/tmp/wh").join("sales", "part=1").url
'/tmp/wh/sales/part=1'
>>> Location("s3://bucket/wh", {"key": "AKIA", "secret": "hush-hush"})
Location('s3://bucket/wh', storage_options=<2 keys hidden>)
>>> redact_text("auth failed for hush-hush", ["hush-hush"])
'auth failed for ***'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import fsspec

from etl.io import stores

__all__ = ["Location", "redact", "redact_text", "secret_values", "is_local"]

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
              "GOOGLE_SERVICE_ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY",
              "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY", "AZURE_CLIENT_SECRET",
              "AZURE_STORAGE_CLIENT_SECRET", "AZURE_STORAGE_CONNECTION_STRING")
_SECRET_NAME = re.compile(r"secret|password|token|sas|credential|private|account_key|access_key|connection_string"
                          r"|service_account_key|^key$", re.IGNORECASE)
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_SIGNED_QUERY = re.compile(r"((?<=[?&])(?:X-Amz-(?:Signature|Credential|Security-Token)|sig|skoid|sktid)=)"
                           r"[^&\s\"']+", re.IGNORECASE)
MASK = "***"


def redact(url: str) -> str:
    """The URL without user, password, query string or fragment."""
    parts = urlsplit(str(url))
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive)
        return str(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_local(url: str) -> bool:
    scheme = urlsplit(str(url)).scheme
    return scheme in ("", "file") or len(scheme) == 1


def secret_values(storage_options: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> set[str]:
    """Secret values to mask: those in ``storage_options`` (by key name) and in the environment."""
    environ = os.environ if environ is None else environ
    found = {environ[name] for name in SECRET_ENV if environ.get(name)}

    def walk(options: Any, secret: bool) -> None:
        if isinstance(options, Mapping):
            for k, v in options.items():
                walk(v, secret or bool(_SECRET_NAME.search(str(k))))
        elif isinstance(options, (list, tuple)):
            for v in options:
                walk(v, secret)
        elif secret and isinstance(options, str):
            found.add(options)

    walk(storage_options or {}, False)
    return {s for s in found if len(s) >= 4}


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with secret values, URL credentials and signed-URL parameters masked.

    Parameters
    ----------
    text : str
        Any text: an error message, a log line, a traceback.
    secrets : iterable of str, optional
        Values to mask; default: the secrets in the environment
        (:func:`secret_values`). Pass ``location.secrets`` to add a location's
        storage options.
    """
    out = str(text)
    for secret in sorted(secret_values() if secrets is None else set(secrets), key=len, reverse=True):
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    out = _USERINFO.sub(r"\1", out)
    return _SIGNED_QUERY.sub(lambda m: m.group(1) + MASK, out)


@dataclass(frozen=True, repr=False)
class Location:
    """A URL plus the options to reach it.

    Parameters
    ----------
    url : str
        Local path or fsspec URL (``s3://``, ``gs://``, ``abfs://``, ``memory://``, ``file://``).
    storage_options : mapping, optional
        In fsspec or deltalake spelling; translated for each (see :mod:`etl.io.stores`).
        Never shown or logged; they do travel to Dask workers inside task graphs.
    """

    url: str
    storage_options: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        url = str(self.url)
        if is_local(url):
            url = os.path.abspath(url[7:] if url.startswith("file://") else url)
        object.__setattr__(self, "url", url.rstrip("/"))

    @property
    def kind(self) -> str:
        """``s3``, ``gcs``, ``azure``, ``memory``, ``local`` or ``other``."""
        return stores.store_kind(self.url)

    @property
    def fsspec_options(self) -> dict:
        """Storage options in the form fsspec wants."""
        return stores.fsspec_options(self.url, self.storage_options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.url, **self.fsspec_options)
        return fs

    @property
    def path(self) -> str:
        """The path inside the filesystem (no scheme)."""
        _, path = fsspec.core.url_to_fs(self.url, **self.fsspec_options)
        return path

    def join(self, *parts: str) -> "Location":
        return Location("/".join([self.url, *[p.strip("/") for p in parts]]), self.storage_options)

    @property
    def delta_options(self) -> dict[str, str] | None:
        """Storage options in the form deltalake wants (strings only).

        Raises
        ------
        ConfigError
            For ``memory://`` (deltalake cannot share fsspec's memory filesystem).
        """
        return stores.delta_options(self.url, self.storage_options)

    @property
    def secrets(self) -> set[str]:
        """Secret values this location may expose (its options and the environment), for :func:`redact_text`."""
        return secret_values(self.storage_options)

    def __str__(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        hidden = f", storage_options=<{len(self.storage_options)} keys hidden>" if self.storage_options else ""
        return f"Location({redact(self.url)!r}{hidden})"
