"""Finding pipelines by name.

Pipelines live in Python modules in a folder (``./pipelines`` by default, or
the folders in ``ETL_PIPELINES``, separated by ``os.pathsep``). Every module-level
:class:`~etl.define.pipeline.Pipeline` object found there is registered under its name.
Each module is imported as ``etlp_<stem>``; the runner uploads the file to the
Dask workers under the same name, so workers that lack the folder can run it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from etl.define.pipeline import Pipeline
from etl.errors import ConfigError, PipelineNotFoundError

DEFAULT_PATH = "pipelines"


def search_path(paths: list[str] | None = None) -> list[Path]:
    """The folders searched for pipelines, in order."""
    if paths:
        return [Path(p) for p in paths]
    env = os.environ.get("ETL_PIPELINES")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path(DEFAULT_PATH)]


def discover(paths: list[str] | None = None) -> dict[str, Pipeline]:
    """Import every module on the search path and return its pipelines by name."""
    found: dict[str, Pipeline] = {}
    for folder in search_path(paths):
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("_"):
                continue
            for pipe in _pipelines_in(_import(file)):
                other = found.get(pipe.name)
                if other is not None and other.module_file != pipe.module_file:
                    raise ConfigError(
                        f"two pipelines are named {pipe.name!r}: in {other.module_file} and {pipe.module_file}. "
                        "Rename one of them."
                    )
                found[pipe.name] = pipe
    return found


def load(name: str, paths: list[str] | None = None) -> Pipeline:
    """The pipeline called ``name``.

    Raises
    ------
    PipelineNotFoundError
        With the names that do exist and the folders searched.
    """
    found = discover(paths)
    if name not in found:
        where = ", ".join(str(p.resolve()) for p in search_path(paths))
        raise PipelineNotFoundError(
            f"no pipeline named {name!r} in {where}; found {sorted(found) or 'none'}. "
            "Run 'etl list' to see them, or set ETL_PIPELINES to the folder that holds yours.",
            pipeline=name,
        )
    return found[name]


def module_name(file: str | Path) -> str:
    """The import name of a pipeline module: ``etlp_<file stem>``, the same on driver and workers."""
    stem = "".join(c if c.isalnum() else "_" for c in Path(file).stem)
    return f"etlp_{stem}"


def _import(file: Path):
    modname = module_name(file)
    resolved = str(file.resolve())
    existing = sys.modules.get(modname)
    if existing is not None and getattr(existing, "__file__", None) == resolved:
        return existing
    spec = importlib.util.spec_from_file_location(modname, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import pipeline module {file}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[modname]
        raise ConfigError(f"pipeline module {file} failed to import: {type(exc).__name__}: {exc}. "
                          "Fix the module; other pipelines are unaffected.", file=str(file)) from exc
    return module


def _pipelines_in(module) -> list[Pipeline]:
    return [v for v in vars(module).values() if isinstance(v, Pipeline)]
