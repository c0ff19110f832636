"""Object stores: one set of storage options for fsspec and deltalake, and a safety probe for commits.

Option translation
------------------
fsspec (s3fs, gcsfs, adlfs) and deltalake (delta-rs, through Rust's
object_store) spell the same settings differently. :func:`fsspec_options` and
:func:`delta_options` accept either spelling, case-insensitively, and return
the form each library wants:

=====================  ===========================================  ==================================
store / setting        fsspec form                                  deltalake form
=====================  ===========================================  ==================================
S3 endpoint            ``endpoint_url`` (or in ``client_kwargs``)   ``AWS_ENDPOINT_URL``
S3 region              ``client_kwargs={"region_name": ...}``       ``AWS_REGION``
S3 plain http          (implied by the URL)                         ``AWS_ALLOW_HTTP="true"``
S3 credentials         ``key``, ``secret``, ``token``               ``AWS_ACCESS_KEY_ID``, ``..._SECRET_ACCESS_KEY``,
                                                                    ``AWS_SESSION_TOKEN``
S3 anonymous           ``anon=True``                                ``AWS_SKIP_SIGNATURE="true"``
S3 profile             ``profile``                                  ``AWS_PROFILE``
S3 virtual hosting     ``config_kwargs={"s3": {"addressing_style":  ``AWS_VIRTUAL_HOSTED_STYLE_REQUEST``
                       "virtual"}}``
GCS credentials        ``token`` (a file path or a key dict)        ``GOOGLE_APPLICATION_CREDENTIALS``,
                                                                    ``GOOGLE_SERVICE_ACCOUNT_KEY``
GCS anonymous          ``token="anon"``                             ``GOOGLE_SKIP_SIGNATURE="true"``
Azure account          ``account_name``, ``account_key``,           ``AZURE_STORAGE_ACCOUNT_NAME``, ``..._ACCOUNT_KEY``,
                       ``sas_token``, ``connection_string``         ``AZURE_STORAGE_SAS_KEY`` (a connection string is
                                                                    split into these)
Azure service princ.   ``tenant_id``, ``client_id``,                ``AZURE_STORAGE_TENANT_ID``, ``..._CLIENT_ID``,
                       ``client_secret``                            ``..._CLIENT_SECRET``
=====================  ===========================================  ==================================

fsspec's listings cache is off for object stores unless the options turn it
on (``use_listings_cache=True``): with it, s3fs answers ``ls``/``exists``/``glob``
from the first listing for the life of the process, so files, leases and
commits written by other processes stay invisible (a notebook rerun would
miss the day's new input files).

Options only one side knows pass to that side: deltalake-only keys
(``AWS_*``/``GOOGLE_*``/``AZURE_*`` not in the table, ``conditional_put``,
``copy_if_not_exists``, ``timeout`` ...) go to deltalake only; anything else
goes to fsspec only. Credentials are translated only when given in the
options: otherwise both libraries read the standard environment variables
themselves, so nothing secret is copied out of the environment. The only
values taken from the environment are non-secret ones the two libraries read
differently (the S3 endpoint from ``AWS_ENDPOINT_URL_S3``, the region from
``AWS_REGION``, and ``AWS_ALLOW_HTTP`` for an ``http://`` endpoint, which
delta-rs refuses otherwise). GCS and Azure mappings follow the libraries'
documentation and are not tested against a server.

Safe concurrent commits
-----------------------
A Delta commit creates ``_delta_log/<version>.json`` only if no other writer
created it first. On S3, delta-rs (1.x) does that with a conditional put
(``If-None-Match: *``) by default. A store that ignores the header lets two
writers both "create" the same version: one commit is silently lost.
:func:`check_conditional_put` asks the store once per endpoint and bucket
whether it honours the header, and raises :class:`~etl.errors.UnsafeStoreError`
if not. No deltalake option is needed for the header: deltalake 1.6.6 sends it
on every commit to S3 by default (``AWS_S3_ALLOW_UNSAFE_RENAME`` and the old
locking requirement are obsolete); ``copy_if_not_exists`` or
``AWS_S3_LOCKING_PROVIDER=dynamodb`` switch delta-rs to those mechanisms
instead, and the probe then leaves safety to them. GCS and Azure enforce their
preconditions natively and local disks use atomic renames: those are not probed.

Examples
--------
>>> delta_options("s3://bkt/t", {"endpoint_url": "http://127.0.0.1:9000",
...               "client_kwargs": {"region_name": "eu-west-1"}}, environ={})
{'AWS_ENDPOINT_URL': 'http://127.0.0.1:9000', 'AWS_REGION': 'eu-west-1', 'AWS_ALLOW_HTTP': 'true'}
>>> fsspec_options("s3://bkt/t", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"},
...                environ={})
{'use_listings_cache': False, 'client_kwargs': {'region_name': 'eu-west-1'}, 'endpoint_url': 'http://127.0.0.1:9000'}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from typing import Any, Mapping
from urllib.parse import urlsplit

from etl.errors import CommitError, ConfigError, UnsafeStoreError

log = logging.getLogger("etl.io.stores")

OPT_OUT_ENV = "ETL_ALLOW_UNSAFE_STORE"

KINDS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "abfs": "azure", "abfss": "azure",
         "az": "azure", "adl": "azure", "azure": "azure", "memory": "memory", "": "local", "file": "local",
         "local": "local"}

# (canonical name, fsspec key, deltalake key, other accepted spellings); all matched lower-case.
_S3 = [
    ("key", "key", "AWS_ACCESS_KEY_ID", ("aws_access_key_id", "access_key_id")),
    ("secret", "secret", "AWS_SECRET_ACCESS_KEY", ("aws_secret_access_key", "secret_access_key")),
    ("token", "token", "AWS_SESSION_TOKEN", ("aws_session_token", "session_token", "aws_token")),
    ("endpoint", "endpoint_url", "AWS_ENDPOINT_URL", ("aws_endpoint_url", "aws_endpoint", "endpoint")),
    ("region", None, "AWS_REGION", ("region_name", "aws_region", "region", "aws_default_region",
                                    "default_region")),
    ("allow_http", None, "AWS_ALLOW_HTTP", ("aws_allow_http", "allow_http")),
    ("anon", "anon", "AWS_SKIP_SIGNATURE", ("aws_skip_signature", "skip_signature")),
    ("profile", "profile", "AWS_PROFILE", ("aws_profile",)),
    ("virtual_hosted", None, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", ("aws_virtual_hosted_style_request",
                                                                 "virtual_hosted_style_request")),
]
_GCS = [
    ("credentials_path", None, "GOOGLE_APPLICATION_CREDENTIALS",
     ("google_application_credentials", "application_credentials", "google_service_account",
      "service_account", "google_service_account_path", "service_account_path")),
    ("credentials_key", None, "GOOGLE_SERVICE_ACCOUNT_KEY", ("google_service_account_key", "service_account_key")),
    ("anon", None, "GOOGLE_SKIP_SIGNATURE", ("google_skip_signature", "skip_signature")),
    ("project", "project", None, ()),
]
_AZURE = [
    ("account_name", "account_name", "AZURE_STORAGE_ACCOUNT_NAME", ("azure_storage_account_name", "account")),
    ("account_key", "account_key", "AZURE_STORAGE_ACCOUNT_KEY",
     ("azure_storage_account_key", "azure_storage_access_key", "azure_storage_key", "access_key")),
    ("sas", "sas_token", "AZURE_STORAGE_SAS_KEY", ("azure_storage_sas_key", "azure_storage_sas_token", "sas_key")),
    ("tenant_id", "tenant_id", "AZURE_STORAGE_TENANT_ID", ("azure_storage_tenant_id", "azure_tenant_id")),
    ("client_id", "client_id", "AZURE_STORAGE_CLIENT_ID", ("azure_storage_client_id", "azure_client_id")),
    ("client_secret", "client_secret", "AZURE_STORAGE_CLIENT_SECRET",
     ("azure_storage_client_secret", "azure_client_secret")),
    ("anon", "anon", "AZURE_SKIP_SIGNATURE", ("azure_skip_signature",)),
    ("endpoint", None, "AZURE_STORAGE_ENDPOINT", ("azure_storage_endpoint", "azure_endpoint")),
    ("use_emulator", None, "AZURE_STORAGE_USE_EMULATOR", ("azure_storage_use_emulator", "use_emulator")),
]
_TABLES = {"s3": _S3, "gcs": _GCS, "azure": _AZURE}
_DELTA_PREFIXES = ("aws_", "google_", "azure_", "delta_")
_DELTA_ONLY = {"conditional_put", "copy_if_not_exists", "allow_invalid_certificates", "timeout",
               "connect_timeout", "pool_idle_timeout", "proxy_url", "user_agent", "unsigned_payload",
               "checksum_algorithm", "request_payer", "max_retries", "retry_timeout", "s3_express"}
_BOOLS = {"anon", "allow_http", "virtual_hosted", "use_emulator"}


def store_kind(url: str) -> str:
    """``s3``, ``gcs``, ``azure``, ``memory``, ``local`` or ``other`` for a URL or path."""
    scheme = urlsplit(str(url)).scheme.lower()
    return "local" if len(scheme) == 1 else KINDS.get(scheme, "other")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _parse(kind: str, options: Mapping[str, Any] | None) -> tuple[dict, dict, dict]:
    """Split options into (canonical settings, fsspec-only options, deltalake-only options)."""
    table = _TABLES[kind]
    lookup = {spelling: canon for canon, fs_key, _, aliases in table
              for spelling in (canon, *((fs_key,) if fs_key else ()), *aliases)}
    lookup.update({dk.lower(): canon for canon, _, dk, _ in table if dk})
    canon: dict = {}
    fs_rest: dict = {}
    delta_rest: dict = {}
    for key, value in (options or {}).items():
        low = str(key).lower()
        if kind == "s3" and low in ("client_kwargs", "config_kwargs") and isinstance(value, Mapping):
            inner = dict(value)
            if low == "client_kwargs":
                for ik in ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key",
                           "aws_session_token"):
                    if ik in inner:
                        canon.setdefault(lookup[ik], inner.pop(ik))
            elif (inner.get("s3") or {}).get("addressing_style") == "virtual":
                canon.setdefault("virtual_hosted", True)
            if inner:
                fs_rest[low] = inner
        elif kind == "gcs" and low == "token":
            _gcs_token(value, canon, fs_rest)
        elif kind == "azure" and low in ("connection_string", "azure_storage_connection_string"):
            fs_rest["connection_string"] = value
            canon.update({k: v for k, v in _azure_connection_string(str(value)).items() if k not in canon})
        elif low in lookup:
            canon[lookup[low]] = value
        elif low.startswith(_DELTA_PREFIXES) or low in _DELTA_ONLY:
            delta_rest[str(key)] = value
        else:
            fs_rest[str(key)] = value
    for name in _BOOLS & canon.keys():
        canon[name] = canon[name] if isinstance(canon[name], bool) else _truthy(canon[name])
    return canon, fs_rest, delta_rest


def _gcs_token(value: Any, canon: dict, fs_rest: dict) -> None:
    if isinstance(value, Mapping):
        canon["credentials_key"] = json.dumps(dict(value))
    elif value == "anon":
        canon["anon"] = True
    elif value in (None, "google_default", "cache", "browser", "cloud"):
        fs_rest["token"] = value
    else:
        canon["credentials_path"] = str(value)


def _azure_connection_string(text: str) -> dict:
    parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    names = {"AccountName": "account_name", "AccountKey": "account_key", "SharedAccessSignature": "sas",
             "BlobEndpoint": "endpoint"}
    return {names[k]: v for k, v in parts.items() if k in names}


def _s3_env(canon: dict, environ: Mapping[str, str]) -> dict:
    """The non-secret S3 settings both libraries must agree on, from the options or the environment."""
    out = dict(canon)
    endpoint = canon.get("endpoint") or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        out["endpoint"] = endpoint
    region = canon.get("region") or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        out["region"] = region
    if str(endpoint or "").lower().startswith("http://") or _truthy(environ.get("AWS_ALLOW_HTTP", "")):
        out["allow_http"] = True
    return out


def fsspec_options(url: str, options: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> dict:
    """``options`` (fsspec or deltalake spelling) in the form fsspec's filesystem for ``url`` takes."""
    kind = store_kind(url)
    if kind not in _TABLES:
        return dict(options or {})
    environ = os.environ if environ is None else environ
    canon, out, _ = _parse(kind, options)
    out.setdefault("use_listings_cache", False)  # another process's writes must show up in listings
    if kind == "s3":
        region = canon.get("region") or (environ.get("AWS_REGION") if "AWS_DEFAULT_REGION" not in environ else None)
        if region:
            out["client_kwargs"] = {**out.get("client_kwargs", {}), "region_name": region}
        if canon.get("virtual_hosted"):
            cfg = dict(out.get("config_kwargs") or {})
            cfg["s3"] = {**cfg.get("s3", {}), "addressing_style": "virtual"}
            out["config_kwargs"] = cfg
    elif kind == "gcs":
        if canon.get("anon"):
            out["token"] = "anon"
        elif "credentials_key" in canon:
            out["token"] = json.loads(canon["credentials_key"])
        elif "credentials_path" in canon:
            out["token"] = canon["credentials_path"]
    for name, fs_key, _, _ in _TABLES[kind]:
        if fs_key and name in canon:
            out[fs_key] = canon[name]
    return out


def delta_options(url: str, options: Mapping[str, Any] | None,
                  environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``options`` (fsspec or deltalake spelling) as deltalake's ``storage_options`` for ``url``.

    Raises
    ------
    ConfigError
        For ``memory://``: deltalake cannot see fsspec's in-memory filesystem.
    """
    kind = store_kind(url)
    if kind == "memory":
        raise ConfigError(
            f"Delta tables on memory:// are not supported ({url.split('://')[0]}://...): deltalake keeps "
            "a private in-memory store per table object and cannot see fsspec's memory filesystem, so the "
            "table would vanish. Use a local path or an object store for Delta tables; memory:// works for "
            "parquet/csv/json sources read by an in-process Dask cluster.", url=url)
    if kind not in _TABLES:
        return {str(k): str(v) for k, v in options.items()} if options else None
    environ = os.environ if environ is None else environ
    canon, _, out = _parse(kind, options)
    if kind == "s3":
        canon = _s3_env(canon, environ)
    result = {str(k): str(v) for k, v in out.items()}
    for name, _, delta_key, _ in _TABLES[kind]:
        if delta_key and name in canon and canon[name] not in (None, False, ""):
            value = canon[name]
            result[delta_key] = "true" if value is True else str(value)
    return result or None


# ------------------------------------------------------------------ safe concurrent commits

_verdicts: dict = {}
_lock = threading.Lock()


def check_conditional_put(location, *, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a table whose store would silently lose concurrent commits.

    Writes ``<table>/_etl/probe-<uuid>`` twice with ``If-None-Match: *`` and
    requires the second put to be refused (412). The answer is cached per
    endpoint and bucket for the life of the process. Only S3 (and S3-compatible
    stores) are probed; local disks, GCS and Azure are safe by construction, and
    tables whose deltalake options select another mutual exclusion
    (``copy_if_not_exists``, ``AWS_S3_LOCKING_PROVIDER=dynamodb``) are left to it.

    Parameters
    ----------
    location : etl.io.storage.Location
        The table's location.
    environ : mapping, optional
        Environment to read ``ETL_ALLOW_UNSAFE_STORE`` from (default ``os.environ``).

    Raises
    ------
    UnsafeStoreError
        The store accepted the second put, or rejects conditional puts, and
        ``ETL_ALLOW_UNSAFE_STORE`` is not set.
    CommitError
        The probe object could not be written at all (permissions, network).
    ConfigError
        The table is on ``memory://``.
    """
    environ = os.environ if environ is None else environ
    if store_kind(location.url) != "s3":
        delta_options(location.url, None)  # raises the ConfigError for memory://
        return
    opts = {k.lower(): v for k, v in (location.delta_options or {}).items()}
    if "copy_if_not_exists" in opts or "aws_copy_if_not_exists" in opts or (
            str(opts.get("aws_s3_locking_provider", environ.get("AWS_S3_LOCKING_PROVIDER", ""))).lower() == "dynamodb"):
        return
    key = (opts.get("aws_endpoint_url", "aws"), urlsplit(location.url).netloc.rsplit("@", 1)[-1])
    with _lock:
        reason = _verdicts[key] if key in _verdicts else _verdicts.setdefault(key, _probe(location, environ))
    if reason is None:
        return
    from etl.io.storage import redact

    where = f"{redact(key[0])} bucket {key[1]!r}" if key[0] != "aws" else f"bucket {key[1]!r}"
    if _truthy(environ.get(OPT_OUT_ENV, "")):
        log.warning("the store at %s does not honour conditional puts (%s); continuing because %s is set: "
                    "make sure only one writer commits to %s at a time", where, reason, OPT_OUT_ENV,
                    redact(location.url))
        return
    raise UnsafeStoreError(
        f"table {redact(location.url)}: the store at {where} does not honour conditional puts "
        f"(If-None-Match: *): {reason}. Concurrent commits to it would be silently lost, so nothing was "
        f"written. Use a store that supports conditional writes (AWS S3, MinIO, recent Ceph/R2 ...), or, if "
        f"only one writer ever commits to this table, set {OPT_OUT_ENV}=1.",
        table=redact(location.url), endpoint=redact(key[0]), bucket=key[1], reason=reason)


def _probe(location, environ: Mapping[str, str]) -> str | None:
    """None if the store refused the second conditional put, else why it is unsafe."""
    from etl.io.storage import redact, redact_text

    fs = location.fs
    path = f"{location.path}/_etl/probe-{uuid.uuid4().hex}"
    bucket, key, _ = fs.split_path(path)

    def put(body: bytes) -> None:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")

    try:
        try:
            put(b"etl conditional-put probe 1")
        except OSError as exc:
            code, status = _s3_error(exc)
            if status in (400, 501) or code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                return f"it rejected a conditional put ({code or status})"
            if _truthy(environ.get(OPT_OUT_ENV, "")):
                return f"the probe could not be written ({type(exc).__name__})"
            raise CommitError(
                f"table {redact(location.url)}: cannot write the commit-safety probe under _etl/: "
                f"{type(exc).__name__}: {redact_text(str(exc), location.secrets)}. Check the bucket, the "
                "endpoint and write permissions.", table=redact(location.url)) from None
        try:
            put(b"etl conditional-put probe 2")
        except FileExistsError:
            return None
        except OSError as exc:
            code, status = _s3_error(exc)
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            return f"a second conditional put failed unexpectedly ({code or status or type(exc).__name__})"
        return "a second put of an existing object with If-None-Match: * succeeded"
    finally:
        try:
            fs.rm_file(path)
        except OSError:
            pass


def _s3_error(exc: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status behind an exception s3fs translated, if any."""
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, Mapping):
            return (response.get("Error", {}).get("Code"),
                    response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        seen = seen.__cause__ or seen.__context__
    return None, None
