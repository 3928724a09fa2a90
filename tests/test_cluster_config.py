"""`weightmom check-cluster`: the shipped cluster.yaml passes, and broken copies each give one finding.

The checks themselves live in sweeps/cluster_check.py: Ray's own offline validation (the schema, then
`prepare_config` and `validate_config`, which is what `ray up` runs before it first talks to the cloud)
and the project's rules that Ray's schema cannot see. Every broken copy here is a real file in tmp_path
through the real Ray validation; the only stand-ins are the blocked network and boto3 of the offline
test and the stub `ray` of the token-mode test.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sweeps import cluster_check
from sweeps.cluster_check import PINNED, cluster_problems, pip_installs, setup_commands_of
from weightmom_sweeps.cli import main

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
PYPROJECT = REPO / "pyproject.toml"
RAY = version("ray")


# -- helpers --------------------------------------------------------------------------------------


def cluster_text() -> str:
    return CLUSTER_YAML.read_text()


def load() -> dict:
    return yaml.safe_load(cluster_text())


def edited(old: str, new: str, text: str | None = None) -> str:
    """cluster.yaml with `old` replaced; `old` must be there, so a stale test cannot pass vacuously."""
    text = cluster_text() if text is None else text
    assert old in text, f"cluster.yaml no longer contains {old!r}; update the test"
    return text.replace(old, new)


def write(tmp_path: Path, content: str | dict, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def cli(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    """The command through the console script's entry point: exit code, stdout lines, stderr lines."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def only_finding(path: Path) -> str:
    """The one problem cluster_problems finds in `path`, without the file name in front."""
    problems = cluster_problems(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(path)), problems
    return problems[0][len(str(path)):]


def findings(config: dict, tmp_path: Path) -> list[str]:
    return cluster_problems(write(tmp_path, config))


def pyproject_pins() -> dict[str, Requirement]:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11+")
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    requirements = {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}
    return {name: requirements[name] for name in PINNED}


# -- the shipped file ------------------------------------------------------------------------------


def test_shipped_cluster_yaml_is_ok(capsys, monkeypatch):
    assert cluster_problems(CLUSTER_YAML) == []
    monkeypatch.chdir(REPO)
    assert cli(["check-cluster"], capsys) == (0, ["cluster.yaml: ok"], [])   # the default path


def test_the_console_script_runs_the_check():
    """The installed `weightmom` script, as a user runs it from the repository root."""
    script = Path(sys.executable).with_name("weightmom")
    assert script.exists(), f"{script} is missing: pip install -e . in this environment"
    ok = subprocess.run([script, "check-cluster", "cluster.yaml"], cwd=REPO, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "cluster.yaml: ok\n", "")
    missing = subprocess.run([script, "check-cluster", "nope.yaml"], cwd=REPO, capture_output=True, text=True)
    expected = (2, "", "weightmom: error: nope.yaml: no such file\n")
    assert (missing.returncode, missing.stdout, missing.stderr) == expected


def test_add_parser_defaults_to_cluster_yaml():
    parser = argparse.ArgumentParser()
    cluster_check.add_parser(parser.add_subparsers(dest="command"))
    assert vars(parser.parse_args(["check-cluster"])) == {"command": "check-cluster", "path": "cluster.yaml"}
    assert parser.parse_args(["check-cluster", "other.yaml"]).path == "other.yaml"


def test_ray_accepts_cluster_yaml_without_slipping_in_its_defaults():
    """Ray's defaults.yaml did not add its own commands: they install the nightly wheel."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(load()))
    validate_config(prepared)
    commands = prepared["head_setup_commands"] + prepared["worker_setup_commands"]
    assert not [c for c in commands if "ray-wheels" in c or "dev0" in c]
    assert prepared["head_setup_commands"][:len(prepared["setup_commands"])] == load()["setup_commands"]
    assert prepared["available_node_types"][prepared["head_node_type"]]["resources"] == {"CPU": 0}


def test_check_needs_no_cloud(monkeypatch, tmp_path):
    """No boto3, no credentials, no network: the shipped file passes and Ray's schema still rejects a typo."""
    for module in ("boto3", "botocore", "googleapiclient", "google.cloud"):
        monkeypatch.setitem(sys.modules, module, None)
    for variable in [v for v in os.environ if v.startswith(("AWS_", "GOOGLE_"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    def offline(*args, **kwargs):
        raise OSError("network use in an offline test")

    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    assert cluster_problems(CLUSTER_YAML) == []
    typo = write(tmp_path, edited("  ssh_user: ubuntu", "  ssh_usr: ubuntu"))
    assert only_finding(typo) == (": auth: Additional properties are not allowed ('ssh_usr' was unexpected)"
                                  " (Ray's schema)")


def test_pyproject_pins_exactly_what_cluster_yaml_installs():
    """A project test: the package's own pins and the cluster's are the same exact versions."""
    requirements, _ = pip_installs(load()["setup_commands"])
    cluster = {canonicalize_name(r.name): str(r.specifier) for r in requirements}
    for name, requirement in pyproject_pins().items():
        assert re.fullmatch(r"==[\w.]+", str(requirement.specifier)), f"{name} is not pinned: {requirement}"
        assert cluster[name] == str(requirement.specifier), f"{name}: {cluster[name]} in cluster.yaml, {requirement}"


def test_gcp_alternative_block_is_ok(tmp_path):
    """The commented GCP block, swapped in for the AWS provider and node types, passes the whole check."""
    block = re.search(r"^# >>> gcp alternative\n(.*?)^# <<< gcp alternative", cluster_text(), re.M | re.S)
    assert block, "cluster.yaml has no '# >>> gcp alternative' ... '# <<< gcp alternative' block"
    gcp = yaml.safe_load(re.sub(r"^# ?", "", block.group(1), flags=re.M))
    assert set(gcp) == {"provider", "available_node_types", "head_node_type"}
    config = {**load(), **gcp}
    assert findings(config, tmp_path) == []
    del config["available_node_types"]["gpu_worker"]["node_config"]["serviceAccounts"]
    assert only_finding(write(tmp_path, config)).endswith(
        "gpu_worker.node_config.serviceAccounts: missing, so the node cannot reach the GCS storage")


def start_command(node: str) -> str:
    """The node's `ray start` command with the prefix Ray adds on workers."""
    from ray.autoscaler._private.util import with_head_node_ip

    config = load()
    key = "head_start_ray_commands" if node == "head" else "worker_start_ray_commands"
    commands = config[key] if node == "head" else with_head_node_ip(config[key], "10.0.0.1")
    return next(c for c in commands if re.search(r"\bray start\b", c))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("node", ["head", "worker"])
def test_ray_start_sets_token_mode_and_refuses_without_token(tmp_path, node):
    """Run the node's real `ray start` command with a stand-in `ray` that records what it got."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    record = tmp_path / "ray-calls"
    stub = bin_dir / "ray"
    stub.write_text(f'#!/bin/sh\necho "RAY_AUTH_MODE=$RAY_AUTH_MODE $*" >> {record}\n')
    stub.chmod(0o755)
    command = start_command(node)
    env = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin"}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)

    missing = run()
    assert missing.returncode != 0 and "auth_token" in missing.stderr
    assert not record.exists(), "ray start ran without a token file"

    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("0" * 64 + "\n")
    assert run().returncode == 0
    calls = record.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("RAY_AUTH_MODE=token start ")
    assert ("--head" in calls[0]) == (node == "head")
    if node == "worker":
        assert "--address=10.0.0.1:6379" in calls[0]


# -- broken copies, through the command ------------------------------------------------------------

TOKEN_LINE = "    export RAY_AUTH_MODE=token;\n"
HEAD_START = TOKEN_LINE + "    ulimit -n 65536;\n    ray start --head"
WORKER_START = TOKEN_LINE + "    ulimit -n 65536;\n    ray start --address"


@pytest.mark.parametrize("old, new, finding", [
    ("\nmax_workers: 8\n", "\nmax_workers: -1\n", "max_workers: -1 is less than the minimum of 0 (Ray's schema)"),
    ("resources: {CPU: 0}\n    min_workers", "resources: {CPU: 4}\n    min_workers",
     "available_node_types.head.resources.CPU: the head must have 0 CPUs so no trial runs on it (got 4)"),
    (HEAD_START, HEAD_START.replace(TOKEN_LINE, ""),
     "head_start_ray_commands: `ray start` without RAY_AUTH_MODE=token before it in the same command"),
    (WORKER_START, WORKER_START.replace(TOKEN_LINE, ""),
     "worker_start_ray_commands: `ray start` without RAY_AUTH_MODE=token before it in the same command"),
    ("  gpu_worker:\n    min_workers: 0", "  gpu_worker:\n    min_worker: 0",
     "available_node_types.gpu_worker: Additional properties are not allowed ('min_worker' was unexpected)"
     " (Ray's schema)"),
    ("IpPermissions: []", "IpPermissions: [{FromPort: 8265, ToPort: 8265, IpProtocol: tcp}]",
     "provider.security_group.IpPermissions[0]: opens port 8265/tcp; only SSH (22/tcp) may be open"),
    ("--host 127.0.0.1 --port 5000", "--host 0.0.0.0 --port 5000",
     "head_start_ray_commands: mlflow server listens on 0.0.0.0; bind it to 127.0.0.1"),
    ('"ray[default,tune]==2.60.0"', '"ray[default,tune]==2.59.0"',
     f"setup_commands: ray[default,tune]==2.59.0 is not the installed ray {RAY}; the cluster must run the driver's"),
    ('"ray[default,tune]==2.60.0"', '"ray[default,tune]>=2.60"',
     f"setup_commands: ray[default,tune]>=2.60 is not an exact pin; write ray[default,tune]=={RAY}"),
    ("    ulimit -n 65536;\n    ray start --address", "    ulimit -n 65536 &&;\n    ray start --address",
     "worker_start_ray_commands[1]: not valid bash: line 1: syntax error near unexpected token `;'"),
], ids=["max-workers", "head-cpu", "head-token", "worker-token", "key-typo", "port", "mlflow-host", "ray-version",
        "ray-unpinned", "bash"])
def test_a_broken_copy_gives_one_finding_and_exit_1(tmp_path, capsys, old, new, finding):
    path = write(tmp_path, edited(old, new))
    code, out, err = cli(["check-cluster", str(path)], capsys)
    assert (code, err, len(out)) == (1, [], 1), (code, out, err)
    assert out[0].startswith(f"{path}: {finding}"), out


def test_a_pasted_aws_key_gives_its_line_and_exit_1(tmp_path, capsys):
    text = cluster_text() + "# key AKIAIOSFODNN7EXAMPLE\n"
    path = write(tmp_path, text)
    code, out, _ = cli(["check-cluster", str(path)], capsys)
    line = text.count("\n")
    assert code == 1 and len(out) == 1 and out[0].startswith(f"{path}:{line}: looks like an AWS access key id;"), out
    assert "AKIAIOSFODNN7EXAMPLE" not in out[0]   # the finding does not echo the secret into a log


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli(["check-cluster", str(missing)], capsys) == (2, [], [f"weightmom: error: {missing}: no such file"])
    assert cli(["check-cluster", str(tmp_path)], capsys) == (2, [], [f"weightmom: error: {tmp_path}: not a file"])


@pytest.mark.parametrize("content, finding", [
    ("cluster_name: [x,\n", ":2: not valid YAML: expected the node content, but found '<stream end>'"),
    ("a:\n\tb: 1\n", ":2: not valid YAML: found character '\\t' that cannot start any token"),
    ("- ray up\n", ": not a mapping of cluster settings (got a YAML list)"),
    ("", ": not a mapping of cluster settings (got an empty file)"),
])
def test_a_file_that_is_no_cluster_mapping_gives_one_line(tmp_path, capsys, content, finding):
    path = write(tmp_path, content)
    assert cli(["check-cluster", str(path)], capsys) == (1, [f"{path}{finding}"], [])


def test_an_undecodable_file_gives_one_line(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_bytes(b"cluster_name: \xff\xfe\n")
    assert only_finding(path).startswith(": cannot read it: 'utf-8' codec can't decode byte 0xff")


# -- broken copies, each check -----------------------------------------------------------------------


def renamed(config: dict, path: tuple[str, ...], new_key: str) -> dict:
    """A copy of `config` with the key at `path` renamed (a typo), keeping its value."""
    broken = copy.deepcopy(config)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    assert path[-1] in parent, f"cluster.yaml has no {'.'.join(path)}; update the test"
    parent[new_key] = parent.pop(path[-1])
    return broken


@pytest.mark.parametrize("path, typo", [
    (("setup_commands",), "setup_comands"),
    (("head_start_ray_commands",), "head_start_ray_comands"),
    (("file_mounts",), "file_mount"),
    (("idle_timeout_minutes",), "idle_timeout_minute"),
    (("available_node_types", "gpu_worker", "max_workers"), "max_worker"),
    (("available_node_types", "head", "resources"), "resource"),
    (("auth", "ssh_user"), "ssh_usr"),
    (("provider", "security_group", "IpPermissions"), "IpPermission"),
])
def test_ray_schema_rejects_a_typo_in_a_key(tmp_path, path, typo):
    """The finding names the typo, or the key it hides where that one is required."""
    finding = only_finding(write(tmp_path, renamed(load(), path, typo)))
    assert finding.endswith(" (Ray's schema)"), finding
    assert f"'{typo}' was unexpected" in finding or f"'{path[-1]}' is a required property" in finding, finding


def test_a_missing_provider_is_rays_schema_not_a_traceback(tmp_path):
    config = renamed(load(), ("provider",), "providr")
    assert only_finding(write(tmp_path, config)) == ": 'provider' is a required property (Ray's schema)"


def test_min_workers_above_the_global_max_is_rays_finding(tmp_path):
    config = load()
    config["available_node_types"]["gpu_worker"]["min_workers"] = 9   # max_workers 8, global 8
    assert only_finding(write(tmp_path, config)) == (": The specified global `max_workers` is smaller than the sum "
                                                     "of `min_workers` of all the available node types "
                                                     "(Ray's validation)")


def test_min_workers_above_the_types_own_max_is_the_projects_finding(tmp_path):
    """Ray only compares the sum of min_workers with the global cap, so this one gets past it."""
    config = load()
    config["max_workers"] = 20
    config["available_node_types"]["gpu_worker"].update(min_workers=9, max_workers=8)
    assert only_finding(write(tmp_path, config)) == ": available_node_types.gpu_worker: min_workers 9 > max_workers 8"


@pytest.mark.parametrize("old, new, expected", [
    ('"optuna==5.0.0"', "optuna", f"optuna is not an exact pin; write optuna=={version('optuna')}"),
    ('"mlflow==3.17.2"', '"mlflow==3.17.1"', f"mlflow==3.17.1 is not the installed mlflow {version('mlflow')}"),
    ('"mlflow==3.17.2"', '"mlflow~=3.17.2"', "mlflow~=3.17.2 is not an exact pin"),
    ('"ray[default,tune]==2.60.0"', '"ray[default,tune]==2.60.*"', "ray[default,tune]==2.60.* is not an exact pin"),
    ('"ray[default,tune]==2.60.0"', '"ray[tune]==2.60.0"', "ray[tune]==2.60.0 lacks the 'default' extra"),
    ('"ray[default,tune]==2.60.0"', '"ray[default]==2.60.0"', "ray[default]==2.60.0 lacks the 'tune' extra"),
    ('"ray[default,tune]==2.60.0" "optuna==5.0.0" "mlflow==3.17.2" ', "",
     f"setup_commands: node types head, gpu_worker do not pip install ray=={RAY}"),
    ("-e ~/weightmom-sweeps", "", "node types head, gpu_worker do not pip install the project"),
])
def test_missing_or_wrong_pins(tmp_path, old, new, expected):
    problems = cluster_problems(write(tmp_path, edited(old, new)))
    assert any(expected in p for p in problems), problems


def test_pins_are_checked_in_every_command_list(tmp_path):
    config = load()
    config["available_node_types"]["gpu_worker"]["worker_setup_commands"] = (
        config["setup_commands"] + ["pip install -U mlflow"])
    assert only_finding(write(tmp_path, config)).startswith(
        ": available_node_types.gpu_worker.worker_setup_commands: mlflow is not an exact pin")


@pytest.mark.parametrize("resources, expected", [
    ("{CPU: 1}", "resources.CPU: the head must have 0 CPUs so no trial runs on it (got 1)"),
    ("{}", "resources.CPU: the head must have 0 CPUs so no trial runs on it (got none,"),
    ("{CPU: 0, GPU: 1}", "resources.GPU: the head must advertise no GPUs so no trial runs on it (got 1)"),
])
def test_a_head_that_could_run_trials(tmp_path, resources, expected):
    text = edited("resources: {CPU: 0}\n    min_workers", f"resources: {resources}\n    min_workers")
    assert only_finding(write(tmp_path, text)).startswith(f": available_node_types.head.{expected}")


def test_a_worker_without_instance_profile(tmp_path):
    config = load()
    del config["available_node_types"]["gpu_worker"]["node_config"]["IamInstanceProfile"]
    assert only_finding(write(tmp_path, config)) == (
        ": available_node_types.gpu_worker.node_config.IamInstanceProfile: missing, so the node cannot reach the "
        "S3 storage")


def test_node_types_with_different_images(tmp_path):
    config = load()
    config["available_node_types"]["gpu_worker"]["node_config"]["ImageId"] = "ami-other"
    assert "use different images" in only_finding(write(tmp_path, config))


def test_a_missing_or_in_repo_token_file(tmp_path):
    config = load()
    del config["file_mounts"]["~/.ray/auth_token"]
    assert only_finding(write(tmp_path, config)) == (
        ": file_mounts: no entry for the token file ~/.ray/auth_token that `ray start` reads")
    config["file_mounts"]["~/.ray/auth_token"] = "ray-token"
    assert only_finding(write(tmp_path, config)).startswith(
        ": file_mounts: the token file comes from 'ray-token', inside the project")


def test_no_token_mode_in_bashrc(tmp_path):
    line = "  - grep -qxF 'export RAY_AUTH_MODE=token' ~/.bashrc || echo 'export RAY_AUTH_MODE=token' >> ~/.bashrc\n"
    assert only_finding(write(tmp_path, edited(line, ""))).startswith(
        ": setup_commands: node types head, gpu_worker do not add `export RAY_AUTH_MODE=token` to ~/.bashrc")


def test_an_open_dashboard(tmp_path):
    text = edited("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
    assert only_finding(write(tmp_path, text)).startswith(": head_start_ray_commands: the dashboard listens on 0.0.0.0")


@pytest.mark.parametrize("old, new, expected", [
    ("--host 127.0.0.1", "--host=0.0.0.0", "mlflow server listens on 0.0.0.0"),
    ("--host 127.0.0.1", "-h 10.0.0.5", "mlflow server listens on 10.0.0.5"),
    ("--host 127.0.0.1", "--setenv=MLFLOW_HOST=0.0.0.0", "mlflow server listens on 0.0.0.0"),
    ("--setenv=MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false ", "",
     "mlflow server without MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"),
    ("/home/ubuntu/venv/bin/mlflow server", "/home/ubuntu/venv/bin/mlflow-server", "no `mlflow server`"),
])
def test_mlflow_on_the_head(tmp_path, old, new, expected):
    assert only_finding(write(tmp_path, edited(old, new))).startswith(f": head_start_ray_commands: {expected}")


@pytest.mark.parametrize("port", [5000, 6379, -1])
def test_open_ports_besides_ssh(tmp_path, port):
    config = load()
    protocol = "-1" if port == -1 else "tcp"
    rule = {"FromPort": port, "ToPort": port, "IpProtocol": protocol, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    config["provider"]["security_group"]["IpPermissions"] = [{**rule, "FromPort": 22, "ToPort": 22,
                                                              "IpProtocol": "tcp"}, rule]
    opened = "every port/-1" if port == -1 else f"port {port}/tcp"
    finding = only_finding(write(tmp_path, config))
    assert finding.startswith(f": provider.security_group.IpPermissions[1]: opens {opened}"), finding


@pytest.mark.parametrize("line, what", [
    ("# aws_secret_access_key: wJalrXUtnFEMI", "an AWS secret key setting"),
    ("# password=hunter2", "a password"),
    ("# --backend-store-uri postgresql://mlflow:hunter2@db:5432/mlflow", "a password in a URL"),
    ("# -----BEGIN RSA PRIVATE KEY-----", "a private key"),
    ("# export RAY_AUTH_TOKEN=3f2a9c", "a literal Ray auth token"),
])
def test_credentials_are_found_even_where_ray_rejects_the_file(tmp_path, line, what):
    text = cluster_text() + line + "\n"
    number = text.count("\n")
    assert only_finding(write(tmp_path, text)).startswith(f":{number}: looks like {what};")
    problems = cluster_problems(write(tmp_path, edited("\nmax_workers: 8\n", "\nmax_workers: -1\n", text)))
    assert [p.split(": ", 1)[1] for p in problems] == ["max_workers: -1 is less than the minimum of 0 (Ray's schema)",
                                                      f"looks like {what}; remove it (the nodes get AWS access from "
                                                      "their instance profiles and Ray's from the token file)"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_check_reads_every_command_list_as_ray_runs_it(tmp_path):
    """Not only the top-level lists: a node type's own worker_setup_commands are checked too, by index."""
    config = load()
    own = config["setup_commands"] + ["echo 'unclosed"]
    config["available_node_types"]["gpu_worker"]["worker_setup_commands"] = own
    assert setup_commands_of(config, "gpu_worker") == own
    finding = only_finding(write(tmp_path, config))
    assert finding.startswith(f": available_node_types.gpu_worker.worker_setup_commands[{len(own) - 1}]: "
                              "not valid bash:"), finding


def test_a_negative_max_workers_of_a_node_type_is_the_projects_finding(tmp_path):
    """Ray's schema bounds only the global max_workers; a node type's own -1 gets past it."""
    text = edited("  gpu_worker:\n    min_workers: 0   # no sweep, no GPU bill\n    max_workers: 8",
                  "  gpu_worker:\n    min_workers: 0   # no sweep, no GPU bill\n    max_workers: -1")
    assert only_finding(write(tmp_path, text)) == ": available_node_types.gpu_worker: min_workers 0 > max_workers -1"


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """`weightmom check-cluster FILE | head -1` with more findings than a pipe holds: no traceback."""
    many = tmp_path / "many.yaml"
    many.write_text("".join(f"key{i}: AKIA{'A' * 16}\n" for i in range(3000)))   # a finding per line
    script = f"set -o pipefail; {shlex.quote(sys.executable)} -m weightmom_sweeps check-cluster {many} | head -1"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and result.stdout.count("\n") == 1, result.stderr
    assert result.stderr == ""
