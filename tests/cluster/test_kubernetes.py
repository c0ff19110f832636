"""The DaskCluster manifest validates against the schema of the operator's CRD, and Dask accepts what it says."""

from __future__ import annotations

import copy
import json
import re

import dask.config
import jsonschema
import pytest
import yaml
from distributed.cli import dask_scheduler, dask_worker

from tests.cluster.helpers import REPO

KUBE = REPO / "cluster" / "kubernetes"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((KUBE / "daskcluster.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def manifest():
    return yaml.safe_load((KUBE / "daskcluster.yaml").read_text())


def container(manifest: dict, role: str) -> dict:
    (c,) = manifest["spec"][role]["spec"]["containers"]
    return c


def test_the_manifest_is_a_valid_daskcluster(validator, manifest):
    assert list(validator.iter_errors(manifest)) == []


def _drop_replicas(m):
    del m["spec"]["worker"]["replicas"]


def _replicas_as_text(m):
    m["spec"]["worker"]["replicas"] = "2"


def _cpu_as_number(m):
    container(m, "worker")["resources"]["limits"]["cpu"] = 1


def _misspelt_field(m):
    m["spec"]["worker"]["replica"] = m["spec"]["worker"].pop("replicas")


def _no_service(m):
    del m["spec"]["scheduler"]["service"]


def _wrong_kind(m):
    m["apiVersion"] = "kubernetes.dask.org/v1alpha1"


@pytest.mark.parametrize("breaks", [_drop_replicas, _replicas_as_text, _cpu_as_number, _misspelt_field,
                                    _no_service, _wrong_kind])
def test_a_broken_copy_fails(validator, manifest, breaks):
    broken = copy.deepcopy(manifest)
    breaks(broken)
    assert list(validator.iter_errors(broken)), f"{breaks.__name__} was accepted"


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def test_dask_accepts_the_container_arguments(manifest, tmp_path):
    """Both commands parse with the installed Dask CLIs (a misspelt flag fails here, not in the cluster)."""
    env = {"DASK_WORKER_NAME": "etl-default-worker-abc", "ETL_MEMORY_LIMIT": "4294967296"}
    for name in ("ca", "scheduler", "scheduler-key", "worker", "worker-key"):
        (tmp_path / f"{name}.pem").touch()  # the CLIs check that the mounted files exist
    for role, cli in (("scheduler", dask_scheduler.main), ("worker", dask_worker.main)):
        args = [a.replace("/etc/dask/tls", str(tmp_path)) for a in _expand(container(manifest, role)["args"], env)]
        assert args[:2] == ["dask", role]
        params = cli.make_context(f"dask {role}", args[2:]).params
        assert (params["tls_ca_file"], params["tls_cert"], params["tls_key"]) == (
            str(tmp_path / "ca.pem"), str(tmp_path / f"{role}.pem"), str(tmp_path / f"{role}-key.pem"))
    assert (params["memory_limit"], params["nthreads"], params["name"]) == (
        env["ETL_MEMORY_LIMIT"], 1, env["DASK_WORKER_NAME"])


def test_tls_files_memory_limit_and_ports_fit_together(manifest):
    for role in ("scheduler", "worker"):
        pod = manifest["spec"][role]["spec"]
        c = container(manifest, role)
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tls"]
        mounted = {f"{mount['mountPath']}/{item['path']}" for item in tls["secret"]["items"]}
        flags = {c["args"][i + 1] for i, a in enumerate(c["args"]) if a.startswith("--tls-")}
        assert flags == mounted, f"{role}: the --tls-* files must be exactly the mounted ones"
    worker = container(manifest, "worker")
    env = {e["name"]: e for e in worker["env"]}
    assert env["ETL_MEMORY_LIMIT"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.memory"
    assert worker["resources"]["limits"]["memory"] == worker["resources"]["requests"]["memory"]
    name = manifest["metadata"]["name"]
    assert env["DASK_SCHEDULER_ADDRESS"]["value"] == f"tls://{name}-scheduler:8786"
    service = manifest["spec"]["scheduler"]["service"]
    named_ports = {p["name"] for p in container(manifest, "scheduler")["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= named_ports
    assert service["selector"]["dask.org/cluster-name"] == name


def test_the_scheduler_serves_the_http_api_the_operator_scales_with(manifest):
    env = {e["name"]: e["value"] for e in container(manifest, "scheduler")["env"] if "value" in e}
    defaults = dask.config.get("distributed.scheduler.http.routes")
    routes = dask.config.collect_env(env)["distributed"]["scheduler"]["http"]["routes"]
    assert "distributed.http.scheduler.api" in routes and set(defaults) <= set(routes)
