"""Cluster profiles: a running Dask cluster's address and TLS files, under a name.

``etl run NAME --cluster prod`` (or ``etl.run(..., cluster="prod")``) reads the
profile ``prod`` instead of asking for an address and three certificate paths.
Profiles live in TOML files, one ``[clusters.<name>]`` table each::

    [clusters.dev]
    address = "tcp://127.0.0.1:8786"

    [clusters.prod]
    address = "tls://dask-scheduler.internal:8786"
    tls_ca_file = "/etc/etl/tls/ca.pem"
    tls_cert = "/etc/etl/tls/client.pem"
    tls_key = { env = "ETL_PROD_TLS_KEY" }   # path or PEM text, read from the environment

Keys: ``address`` (``tcp://`` or ``tls://``, required), ``tls_ca_file``,
``tls_cert``, ``tls_key`` (all three for ``tls://``, none for ``tcp://``) and
``description``. Any value may be ``{ env = "NAME" }``: it is read from that
environment variable when the profile is loaded, so a secret never sits in the
file. Relative paths are relative to the file; ``~`` is expanded.

The files, searched in this order (the first that defines a name wins):
``$ETL_CLUSTER_PROFILES`` alone when it is set (a file, or several separated by
``os.pathsep``); otherwise ``./etl-clusters.toml``, then
``$XDG_CONFIG_HOME/etl/clusters.toml`` (``~/.config/etl/clusters.toml``).
``cluster/profiles.toml`` in the repository is a commented example.

Examples
--------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "clusters.toml").write_text('[clusters.dev]\\naddress = "tcp://127.0.0.1:8786"\\n')
>>> prof = load_profile("dev", files=[folder / "clusters.toml"])
>>> prof.address, prof.security()
('tcp://127.0.0.1:8786', None)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from etl.errors import ConfigError

__all__ = ["Profile", "list_profiles", "load_profile", "profile_files"]

_TLS_KEYS = ("tls_ca_file", "tls_cert", "tls_key")
_KEYS = ("address", "description", *_TLS_KEYS)


@dataclass(frozen=True)
class Profile:
    """A named Dask cluster: where its scheduler listens and how to authenticate to it.

    Attributes
    ----------
    name : str
        The profile's name.
    address : str
        Scheduler address, ``tcp://host:port`` or ``tls://host:port``.
    source : pathlib.Path
        The file the profile was read from.
    tls_ca_file, tls_cert, tls_key : str or None
        CA certificate, client certificate and client key: paths or PEM text.
    description : str
        Free text for people.
    """

    name: str
    address: str
    source: Path
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    description: str = ""

    @property
    def tls(self) -> bool:
        return self.address.startswith("tls://")

    def security(self):
        """The ``distributed.Security`` for a client of this cluster; None for plain TCP.

        Raises
        ------
        ConfigError
            A TLS file is missing or unreadable (names the file and the profile).
        """
        if not self.tls:
            return None
        from distributed import Security

        for key in _TLS_KEYS:
            value = getattr(self, key)
            if "\n" not in value and not os.access(value, os.R_OK):
                raise ConfigError(f"cluster profile {self.name!r} in {self.source}: {key} {value} is missing or "
                                  "unreadable. Fix the path, or make certificates with cluster/hosts/make-certs.sh.",
                                  profile=self.name, file=str(self.source))
        return Security(tls_ca_file=self.tls_ca_file, tls_client_cert=self.tls_cert,
                        tls_client_key=self.tls_key, require_encryption=True)


def profile_files(cwd: str | Path | None = None) -> list[Path]:
    """The profile files searched, in order (whether or not they exist)."""
    env = os.environ.get("ETL_CLUSTER_PROFILES")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path(cwd or ".") / "etl-clusters.toml", config / "etl" / "clusters.toml"]


def list_profiles(files: list[str | Path] | None = None) -> dict[str, Path]:
    """The profile names defined in ``files`` (default :func:`profile_files`), each with its file."""
    return {name: file for name, (file, _) in _read(files).items()}


def _read(files: list[str | Path] | None) -> dict[str, tuple[Path, object]]:
    found: dict[str, tuple[Path, dict]] = {}
    for file in map(Path, files if files is not None else profile_files()):
        if not file.is_file():
            continue
        try:
            with file.open("rb") as fh:
                doc = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read cluster profiles from {file}: {exc}. Fix the TOML.",
                              file=str(file)) from exc
        clusters = doc.get("clusters", {})
        if not isinstance(clusters, dict):
            raise ConfigError(f"{file}: 'clusters' must be a table of [clusters.<name>] tables.", file=str(file))
        for name, table in clusters.items():
            found.setdefault(name, (file, table))
    return found


def load_profile(name: str, files: list[str | Path] | None = None) -> Profile:
    """The cluster profile called ``name``.

    Parameters
    ----------
    name : str
        A ``[clusters.<name>]`` table in one of the profile files.
    files : list of path, optional
        Files to search instead of :func:`profile_files`.

    Raises
    ------
    ConfigError
        No such profile (lists the files searched and the names they define),
        or the profile is malformed (names the file, the profile and the key).
    """
    searched = [Path(f) for f in files] if files is not None else profile_files()
    found = _read(searched)
    if name not in found:
        where = ", ".join(str(f) for f in searched)
        raise ConfigError(f"no cluster profile named {name!r} in {where}; found {sorted(found) or 'none'}. "
                          "Add a [clusters.<name>] table (see cluster/profiles.toml) or set "
                          "ETL_CLUSTER_PROFILES to the file that holds it.", profile=name)
    file, table = found[name]
    return _parse(name, file, table)


def _parse(name: str, file: Path, table) -> Profile:
    def fail(msg: str) -> ConfigError:
        return ConfigError(f"cluster profile {name!r} in {file}: {msg}", profile=name, file=str(file))

    if not isinstance(table, dict):
        raise fail("expected a table of keys, e.g. address = \"tls://host:8786\".")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise fail(f"unknown key(s) {unknown}; the keys are {list(_KEYS)}.")
    values = {key: _value(table[key], key, fail) for key in table}
    address = values.get("address")
    if not address:
        raise fail("'address' is missing; expected tcp://host:port or tls://host:port.")
    scheme = address.partition("://")[0]
    if scheme not in ("tcp", "tls"):
        raise fail(f"address {address!r} must start with tcp:// or tls://.")
    given = [k for k in _TLS_KEYS if values.get(k)]
    if scheme == "tls" and len(given) < len(_TLS_KEYS):
        raise fail(f"a tls:// address needs {list(_TLS_KEYS)}; missing {[k for k in _TLS_KEYS if k not in given]}.")
    if scheme == "tcp" and given:
        raise fail(f"{given} given but the address {address!r} is plain TCP; use tls://.")
    for key in given:
        if "\n" not in values[key]:
            values[key] = str((file.parent / Path(values[key]).expanduser()).resolve())
    return Profile(name=name, source=file, **values)


def _value(raw, key: str, fail) -> str:
    if isinstance(raw, dict):
        var = raw.get("env")
        if set(raw) != {"env"} or not isinstance(var, str):
            raise fail(f"{key}: expected a string or {{ env = \"VARIABLE\" }}, found {raw!r}.")
        if not os.environ.get(var):
            raise fail(f"{key} is read from the environment variable {var}, which is not set.")
        return os.environ[var]
    if not isinstance(raw, str):
        raise fail(f"{key}: expected a string, found {type(raw).__name__} {raw!r}.")
    return raw
