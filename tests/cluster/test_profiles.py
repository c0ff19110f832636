"""Cluster profiles: found by name in TOML files, TLS files turned into a distributed.Security."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from distributed import Security

from etl.errors import ConfigError
from etl.run.profiles import list_profiles, load_profile, profile_files
from tests.cluster.helpers import REPO, make_certs


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def tls_files(tmp_path):
    return make_certs(tmp_path / "tls")


def test_a_profile_is_found_by_name_in_the_env_file(tmp_path, monkeypatch):
    file = write(tmp_path / "clusters.toml", '[clusters.dev]\naddress = "tcp://10.0.0.1:8786"\n'
                                              '[clusters.other]\naddress = "tcp://10.0.0.2:8786"\n')
    monkeypatch.setenv("ETL_CLUSTER_PROFILES", str(file))
    prof = load_profile("other")
    assert (prof.name, prof.address, prof.source, prof.security()) == ("other", "tcp://10.0.0.2:8786", file, None)


def test_the_first_file_defining_a_name_wins(tmp_path, monkeypatch):
    project = write(tmp_path / "etl-clusters.toml", '[clusters.dev]\naddress = "tcp://project:8786"\n')
    config = tmp_path / "config"
    (config / "etl").mkdir(parents=True)
    write(config / "etl" / "clusters.toml", '[clusters.dev]\naddress = "tcp://user:8786"\n'
                                            '[clusters.mine]\naddress = "tcp://mine:8786"\n')
    monkeypatch.delenv("ETL_CLUSTER_PROFILES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.chdir(tmp_path)
    assert profile_files() == [Path("etl-clusters.toml"), config / "etl" / "clusters.toml"]
    assert load_profile("dev").address == "tcp://project:8786"
    assert load_profile("mine").address == "tcp://mine:8786"
    assert list_profiles() == {"dev": Path("etl-clusters.toml"), "mine": config / "etl" / "clusters.toml"}


def test_an_unknown_name_lists_the_profiles_that_exist(tmp_path):
    file = write(tmp_path / "clusters.toml", '[clusters.dev]\naddress = "tcp://a:1"\n'
                                              '[clusters.prod]\naddress = "tcp://b:2"\n')
    with pytest.raises(ConfigError) as info:
        load_profile("staging", files=[file])
    msg = str(info.value)
    assert "'staging'" in msg and str(file) in msg and "['dev', 'prod']" in msg
    assert info.value.exit_code == 3 and info.value.profile == "staging"
    assert pickle.loads(pickle.dumps(info.value)).profile == "staging"


def test_a_tls_profile_gives_a_security_with_its_files(tmp_path, tls_files):
    file = write(tmp_path / "clusters.toml", f"""
[clusters.prod]
address = "tls://scheduler.internal:8786"
tls_ca_file = "{tls_files / 'ca.pem'}"
tls_cert = "tls/client.pem"         # relative to this file
tls_key = {{ env = "TEST_ETL_KEY" }}
""")
    key = (tls_files / "client-key.pem").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_ETL_KEY", key)  # PEM text from the environment, never in the file
        prof = load_profile("prod", files=[file])
    sec = prof.security()
    assert isinstance(sec, Security) and sec.require_encryption
    assert sec.tls_ca_file == str(tls_files / "ca.pem")
    assert sec.tls_client_cert == str(tls_files / "client.pem")
    assert sec.tls_client_key == key
    sec.get_connection_args("client")  # builds the SSL context: the files really are a cert chain


@pytest.mark.parametrize("body, fragment", [
    ('address = "tls://h:1"\ntls_ca_file = "ca.pem"', "missing ['tls_cert', 'tls_key']"),
    ('address = "tcp://h:1"\ntls_ca_file = "ca.pem"', "plain TCP"),
    ('address = "h:8786"', "must start with tcp:// or tls://"),
    ('adress = "tcp://h:1"', "unknown key(s) ['adress']"),
    ('address = 8786', "expected a string, found int"),
    ('address = { env = "TEST_ETL_UNSET_VARIABLE" }', "TEST_ETL_UNSET_VARIABLE, which is not set"),
])
def test_a_malformed_profile_names_file_profile_and_key(tmp_path, monkeypatch, body, fragment):
    monkeypatch.delenv("TEST_ETL_UNSET_VARIABLE", raising=False)
    file = write(tmp_path / "clusters.toml", f"[clusters.bad]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_profile("bad", files=[file])
    assert fragment in str(info.value) and "'bad'" in str(info.value) and str(file) in str(info.value)


def test_a_missing_tls_file_is_named_when_the_security_is_made(tmp_path, tls_files):
    file = write(tmp_path / "clusters.toml", f"""
[clusters.prod]
address = "tls://h:1"
tls_ca_file = "{tls_files / 'ca.pem'}"
tls_cert = "{tls_files / 'client.pem'}"
tls_key = "{tls_files / 'nope.pem'}"
""")
    prof = load_profile("prod", files=[file])
    with pytest.raises(ConfigError, match="tls_key .*nope.pem is missing"):
        prof.security()


def test_broken_toml_names_the_file(tmp_path):
    file = write(tmp_path / "clusters.toml", "[clusters.dev\naddress = 1\n")
    with pytest.raises(ConfigError, match="clusters.toml"):
        load_profile("dev", files=[file])


def test_the_example_profiles_in_the_repo_load(monkeypatch):
    example = REPO / "cluster" / "profiles.toml"
    assert set(list_profiles([example])) == {"local", "dev", "k8s"}
    local = load_profile("local", files=[example])
    assert (local.address, local.security()) == ("tcp://127.0.0.1:8786", None)
    dev = load_profile("dev", files=[example])
    assert dev.tls and dev.tls_ca_file == str(Path.home() / ".config" / "etl" / "tls" / "ca.pem")
    for var in ("ETL_K8S_TLS_CA", "ETL_K8S_TLS_CERT", "ETL_K8S_TLS_KEY"):
        monkeypatch.setenv(var, f"/secrets/{var}")
    assert load_profile("k8s", files=[example]).tls_key == "/secrets/ETL_K8S_TLS_KEY"
