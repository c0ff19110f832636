"""The exceptions of ``etl``: one root, a small documented tree.

Every exception the framework raises on purpose derives from :class:`EtlError`,
so ``except etl.EtlError`` catches all of them. Each leaf carries an
``exit_code`` that the command line returns, so a CI job can tell failure
classes apart without parsing text::

    EtlError                    1  anything else the framework refused to do
    ├── ConfigError             3  a pipeline declaration, option or name is wrong
    │   └── PipelineNotFoundError  no pipeline of that name on the search path
    ├── ClusterError            4  the Dask scheduler cannot be reached or lost the work
    ├── SourceError             5  an input is missing or unreadable (names the file)
    ├── SchemaError             6  the output does not match the declared schema (names the column)
    │   └── DuplicateKeyError      two source rows for one merge key, no ordering declared
    ├── ContractError           7  a data contract failed beyond its error budget
    └── CommitError             8  the Delta commit could not be made; the table is unchanged
        ├── ConflictError          concurrent writers kept conflicting past the retry budget
        └── UnsafeStoreError       the store cannot make concurrent commits safe

Every message says what failed, what was expected, what was found and what to
do. Exceptions pickle with their attributes, because they cross from Dask
workers to the driver.

Examples
--------
>>> import pickle
>>> err = SchemaError("column 'x': expected int64, found string", column="x")
>>> again = pickle.loads(pickle.dumps(err))
>>> (type(again).__name__, again.column, again.exit_code)
('SchemaError', 'x', 6)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EtlError",
    "ConfigError",
    "PipelineNotFoundError",
    "ClusterError",
    "SourceError",
    "SchemaError",
    "DuplicateKeyError",
    "ContractError",
    "CommitError",
    "ConflictError",
    "UnsafeStoreError",
]


def _rebuild(cls: type, message: str, attrs: dict[str, Any]) -> "EtlError":
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(attrs)
    return err


class EtlError(Exception):
    """Root of every error ``etl`` raises on purpose.

    Parameters
    ----------
    message : str
        What failed, what was expected, what was found and what to do.
    **attrs
        Structured details (``file=``, ``column=``, ``table=`` ...), kept as
        attributes so callers need not parse the message.
    """

    exit_code = 1

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        self.__dict__.update(attrs)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


class ConfigError(EtlError):
    """A pipeline declaration, an option or a name is wrong. Fix the declaration."""

    exit_code = 3


class PipelineNotFoundError(ConfigError):
    """No pipeline of that name was found on the pipeline search path."""


class ClusterError(EtlError):
    """The Dask scheduler cannot be reached, or the cluster lost the work."""

    exit_code = 4


class SourceError(EtlError):
    """An input is missing or cannot be read. The message names the file."""

    exit_code = 5


class SchemaError(EtlError):
    """The output does not match the declared schema. The message names the column."""

    exit_code = 6


class DuplicateKeyError(SchemaError):
    """Two source rows share a merge key and the pipeline declares no ordering column."""


class ContractError(EtlError):
    """A data contract failed beyond its error budget; nothing was committed."""

    exit_code = 7


class CommitError(EtlError):
    """The Delta commit could not be made; the table stays at its last version."""

    exit_code = 8


class ConflictError(CommitError):
    """Concurrent writers kept conflicting after every allowed retry."""


class UnsafeStoreError(CommitError):
    """The object store does not honour conditional puts; concurrent commits would be lost."""
