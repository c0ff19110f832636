"""Locations on local disk or object stores, and keeping credentials out of sight.

:class:`Location` ties a URL to its fsspec filesystem and to the storage
options deltalake needs. Credentials come from the environment or from
``storage_options``; :func:`redact` strips anything secret from a URL before it
is logged, shown or committed.

Examples
--------
>>> redact("s3://AKIA:secret@bucket/path?X-Amz-Signature=abc")
's3://bucket/path'
>>> Location("/tmp/wh").join("sales", "part=1").url
'/tmp/wh/sales/part=1'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import fsspec


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


@dataclass(frozen=True)
class Location:
    """A URL plus the options to reach it.

    Parameters
    ----------
    url : str
        Local path or fsspec URL (``s3://``, ``gs://``, ``abfs://``, ``memory://``, ``file://``).
    storage_options : mapping, optional
        Passed to fsspec and (translated) to deltalake. Never logged.
    """

    url: str
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        url = str(self.url)
        if is_local(url):
            url = os.path.abspath(url[7:] if url.startswith("file://") else url)
        object.__setattr__(self, "url", url.rstrip("/"))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.url, **dict(self.storage_options or {}))
        return fs

    @property
    def path(self) -> str:
        """The path inside the filesystem (no scheme)."""
        _, path = fsspec.core.url_to_fs(self.url, **dict(self.storage_options or {}))
        return path

    def join(self, *parts: str) -> "Location":
        return Location("/".join([self.url, *[p.strip("/") for p in parts]]), self.storage_options)

    @property
    def delta_options(self) -> dict[str, str] | None:
        """Storage options in the form deltalake wants (strings only)."""
        if not self.storage_options:
            return None
        return {str(k): str(v) for k, v in self.storage_options.items()}

    def __str__(self) -> str:
        return redact(self.url)
