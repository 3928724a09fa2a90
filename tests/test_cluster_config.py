"""cluster.yaml, checked offline: Ray's own validation (what `ray up` runs before it first talks to
the cloud), the project's checks that Ray's schema cannot see, and broken copies each must catch.

Ray's half is `prepare_config` (merge with the provider's defaults.yaml, fill per-type worker
counts) then `validate_config` (ray-schema.json, whose objects mostly forbid unknown keys, plus
cross-field checks). Neither needs boto3, credentials or the network; a test below proves it.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from ray.autoscaler._private.command_runner import _with_interactive
from ray.autoscaler._private.util import prepare_config, validate_config, with_head_node_ip

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
PYPROJECT = REPO / "pyproject.toml"
PINNED = ("ray", "optuna", "mlflow")                  # the versions the sweep code is tested against
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"              # where Ray looks when RAY_AUTH_TOKEN_PATH is unset
SHELL_OPERATORS = {"&&", "||", ";", "|", "(", ")", "&"}
PIP_OPTIONS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
                          "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--python-version",
                          "--platform", "--implementation", "--abi", "--only-binary", "--no-binary"}
CREDENTIAL_PATTERNS = {
    "an AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "an AWS secret key setting": r"(?i)aws_secret_access_key",
    "an AWS session token setting": r"(?i)aws_session_token",
    "a password": r"(?i)passw(or)?d\s*[=:]\s*\S",
    "a password in a URL": r"://[^\s/:@]+:[^\s/@]+@",
    "a private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "a literal Ray auth token": r"RAY_AUTH_TOKEN\s*[=:]\s*['\"]?(?!\$)\w",
}


# -- loading --------------------------------------------------------------------------------------


def cluster_text() -> str:
    return CLUSTER_YAML.read_text()


def load(text: str | None = None) -> dict:
    return yaml.safe_load(cluster_text() if text is None else text)


def edited(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced; `old` must be there, so a stale test cannot pass vacuously."""
    assert old in text, f"cluster.yaml no longer contains {old!r}; update the test"
    return text.replace(old, new)


def ray_validate(config: dict) -> dict:
    """What `ray up` does to the file before its first cloud call; raises on a bad config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def pyproject_pins() -> dict[str, Requirement]:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11+")
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    requirements = {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}
    return {name: requirements[name] for name in PINNED}


# -- the project's checks --------------------------------------------------------------------------


def shell_words(command: str) -> list[str]:
    """A command line as the shell splits it, with operators (&&, ;, parentheses) as words of their own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def pip_installs(commands: list[str]) -> tuple[list[Requirement], list[str]]:
    """The requirements and the local paths (editable or not) that `pip install` is given."""
    requirements, paths = [], []
    for command in commands:
        words = shell_words(command)
        for i, word in enumerate(words[:-1]):
            if not (re.fullmatch(r"(\S*/)?pip3?", word) and words[i + 1] == "install"):
                continue
            args = iter(words[i + 2:])
            for arg in args:
                if arg in SHELL_OPERATORS:
                    break
                if arg in ("-e", "--editable"):
                    paths.append(next(args, ""))
                elif arg.startswith("--editable="):
                    paths.append(arg.split("=", 1)[1])
                elif arg in PIP_OPTIONS_WITH_VALUE:
                    next(args, None)
                elif not arg.startswith("-"):
                    try:
                        requirements.append(Requirement(arg))
                    except InvalidRequirement:
                        paths.append(arg)
    return requirements, paths


def home_path(path: str, user: str) -> str:
    return re.sub(r"^~(?=/|$)", f"/home/{user}", path).rstrip("/")


def setup_commands_of(config: dict, node_type: str) -> list[str]:
    """The setup commands a node of this type runs, merged the way Ray merges them."""
    common = config.get("setup_commands", [])
    if node_type == config.get("head_node_type"):
        return common + config.get("head_setup_commands", [])
    own = config["available_node_types"][node_type].get("worker_setup_commands")
    return own if own is not None else common + config.get("worker_setup_commands", [])


def install_problems(config: dict, pins: dict[str, Requirement]) -> list[str]:
    user = config.get("auth", {}).get("ssh_user", "ubuntu")
    projects = {home_path(remote, user) for remote, local in (config.get("file_mounts") or {}).items()
                if str(local).rstrip("/") in (".", "")}
    problems = [] if projects else ["file_mounts: the project ('.') is not mounted on the nodes"]
    for node_type in config.get("available_node_types", {}):
        requirements, paths = pip_installs(setup_commands_of(config, node_type))
        where = f"setup commands of {node_type}"
        if projects and not projects & {home_path(p, user) for p in paths}:
            problems.append(f"{where}: do not pip install the project ({', '.join(sorted(projects))})")
        for name, pin in pins.items():
            found = [r for r in requirements if canonicalize_name(r.name) == name]
            if not found:
                problems.append(f"{where}: do not install {name}{pin.specifier} (pyproject.toml's pin)")
            for requirement in found:
                if str(requirement.specifier) != str(pin.specifier):
                    problems.append(f"{where}: {requirement} does not pin {name}{pin.specifier} as pyproject.toml does")
                if not set(pin.extras) <= set(requirement.extras):
                    problems.append(f"{where}: {requirement} lacks the extras {sorted(pin.extras)} of pyproject.toml")
                if name == "ray" and "default" not in requirement.extras:
                    problems.append(f"{where}: {requirement} lacks the 'default' extra (dashboard and job server)")
    return problems


def node_problems(config: dict) -> list[str]:
    problems = []
    provider = config.get("provider", {}).get("type")
    types = config.get("available_node_types", {})
    head = config.get("head_node_type")
    if head not in types:
        return [f"head_node_type {head!r} is not one of available_node_types"]
    resources = types[head].get("resources") or {}
    if resources.get("CPU") != 0:
        problems.append(f"head node type {head}: resources must say CPU: 0 so no trial runs there, not {resources}")
    if resources.get("GPU", 0) != 0:
        problems.append(f"head node type {head}: advertises GPUs {resources['GPU']}")
    for name, node_type in types.items():
        node_config = node_type.get("node_config") or {}
        minimum = node_type.get("min_workers", 0)
        maximum = node_type.get("max_workers", 0 if name == head else config.get("max_workers", 2))
        if minimum > maximum:
            problems.append(f"node type {name}: min_workers {minimum} > max_workers {maximum}")
        if provider == "aws" and not {"Arn", "Name"} & set(node_config.get("IamInstanceProfile") or {}):
            problems.append(f"node type {name}: no IamInstanceProfile (the nodes could not reach the S3 storage)")
        if provider == "gcp" and name != head and not node_config.get("serviceAccounts"):
            problems.append(f"node type {name}: no serviceAccounts (the workers could not reach the GCS storage)")
    images = {name: image_of(provider, node_type.get("node_config") or {}) for name, node_type in types.items()}
    if len(set(images.values())) > 1:
        problems.append(f"node types use different images {images}: Ray needs the same Python on every node")
    return problems


def image_of(provider: str | None, node_config: dict) -> str | None:
    if provider == "gcp":
        boot = [d for d in node_config.get("disks", []) if d.get("boot")]
        return boot[0].get("initializeParams", {}).get("sourceImage") if boot else None
    return node_config.get("ImageId")


def start_problems(config: dict) -> list[str]:
    problems = []
    mounts = {home_path(remote, "USER"): local for remote, local in (config.get("file_mounts") or {}).items()}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config.get(key, []) if re.search(r"\bray start\b", c)]
        if not starts:
            problems.append(f"{key}: no `ray start`")
        for command in starts:
            # Each command runs in a shell of its own: the mode must be set in the same one.
            mode = re.search(r"\bRAY_AUTH_MODE=token\b", command)
            if not mode or mode.start() > command.index("ray start"):
                problems.append(f"{key}: `ray start` without RAY_AUTH_MODE=token before it in the same command")
            path = re.search(r"\bRAY_AUTH_TOKEN_PATH=(\S+?);?(\s|$)", command)
            token = home_path(path.group(1) if path else DEFAULT_TOKEN_PATH, "USER")
            if token not in mounts:
                problems.append(f"{key}: the token file {token} is not in file_mounts")
            elif not str(mounts[token]).startswith(("~", "/")):
                problems.append(f"file_mounts: the token comes from {mounts[token]!r}, a path inside the project")
            if re.search(r"--dashboard-host[= ]0\.0\.0\.0", command):
                problems.append(f"{key}: the dashboard listens on 0.0.0.0; reach it with `ray dashboard` instead")
    mlflow = [c for c in config.get("head_start_ray_commands", []) if "mlflow server" in c]
    if not mlflow:
        problems.append("head_start_ray_commands: no `mlflow server`")
    elif not any("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in c for c in mlflow):
        problems.append("head_start_ray_commands: mlflow server without MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false")
    return problems


def security_problems(config: dict, text: str) -> list[str]:
    problems = []
    rules = config.get("provider", {}).get("security_group", {}).get("IpPermissions") or []
    for rule in rules:
        ports = (rule.get("FromPort"), rule.get("ToPort"), str(rule.get("IpProtocol", "")).lower())
        if ports != (22, 22, "tcp"):
            problems.append(f"provider.security_group opens more than SSH: {rule}")
    for what, pattern in CREDENTIAL_PATTERNS.items():
        for match in re.finditer(pattern, text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"cluster.yaml:{line}: looks like {what} ({match.group(0)!r})")
    return problems


def project_problems(text: str, pins: dict[str, Requirement]) -> list[str]:
    """Everything Ray's schema accepts but this project's cluster must not have. [] when all is well."""
    config = load(text)
    return (install_problems(config, pins) + node_problems(config) + start_problems(config)
            + security_problems(config, text))


# -- the shipped file ------------------------------------------------------------------------------


def test_ray_accepts_cluster_yaml():
    prepared = ray_validate(load())
    # Ray's defaults.yaml did not slip its own commands in: they install the nightly wheel.
    commands = prepared["head_setup_commands"] + prepared["worker_setup_commands"]
    assert not [c for c in commands if "ray-wheels" in c or "dev0" in c]
    assert prepared["head_setup_commands"][:len(prepared["setup_commands"])] == load()["setup_commands"]
    assert prepared["available_node_types"][prepared["head_node_type"]]["resources"] == {"CPU": 0}


def test_ray_validation_needs_no_cloud(monkeypatch):
    """No boto3, no credentials, no network: prepare_config and validate_config still pass."""
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
    ray_validate(load())


def test_project_checks_pass():
    assert project_problems(cluster_text(), pyproject_pins()) == []


def test_pyproject_pins_exactly():
    """The cluster check compares against these, so they must be exact pins."""
    for name, requirement in pyproject_pins().items():
        assert re.fullmatch(r"==[\w.]+", str(requirement.specifier)), f"{name} is not pinned: {requirement}"


def test_gcp_alternative_block_is_valid():
    """The commented GCP block, swapped in for the AWS provider and node types, passes both halves."""
    block = re.search(r"^# >>> gcp alternative\n(.*?)^# <<< gcp alternative", cluster_text(), re.M | re.S)
    assert block, "cluster.yaml has no '# >>> gcp alternative' ... '# <<< gcp alternative' block"
    gcp = yaml.safe_load(re.sub(r"^# ?", "", block.group(1), flags=re.M))
    assert set(gcp) == {"provider", "available_node_types", "head_node_type"}
    config = {**load(), **gcp}
    ray_validate(config)
    text = yaml.safe_dump(config, sort_keys=False)
    assert project_problems(text, pyproject_pins()) == []


def all_commands(config: dict) -> dict[str, list[str]]:
    """Every command list, with the prefix Ray adds for worker nodes."""
    head = setup_commands_of(config, config["head_node_type"]) + config["head_start_ray_commands"]
    workers = with_head_node_ip(setup_commands_of(config, "gpu_worker") + config["worker_start_ray_commands"],
                                "10.0.0.1")
    return {"head": head, "worker": workers}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash_as_ray_runs_it():
    for node, commands in all_commands(load()).items():
        for command in commands:
            # Ray runs `bash --login -c -i <this>` over SSH; -n parses without running anything.
            inner = shlex.split(_with_interactive(command)[-1])[0]
            result = subprocess.run(["bash", "-n", "-c", inner], capture_output=True, text=True)
            assert result.returncode == 0, f"{node}: {command}\n{result.stderr}"


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
    command = next(c for c in all_commands(load())[node] if re.search(r"\bray start\b", c))
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


# -- broken copies ---------------------------------------------------------------------------------


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
    (("available_node_types", "gpu_worker", "min_workers"), "min_worker"),
    (("available_node_types", "head", "resources"), "resource"),
    (("auth", "ssh_user"), "ssh_usr"),
    (("provider", "security_group", "IpPermissions"), "IpPermission"),
])
def test_ray_rejects_a_typo_in_a_key(path, typo):
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(renamed(load(), path, typo))


def test_min_workers_above_max_workers_fails():
    config = load()
    config["available_node_types"]["gpu_worker"]["min_workers"] = 9   # max_workers 8, global 8
    with pytest.raises(ValueError, match="min_workers"):
        ray_validate(config)
    assert any("min_workers 9 > max_workers 8" in p
               for p in project_problems(yaml.safe_dump(config), pyproject_pins()))


def test_min_workers_above_the_types_own_max_is_caught_by_the_project_check():
    """Ray only compares the sum of min_workers with the global cap, so this one gets past it."""
    config = load()
    config["max_workers"] = 20
    config["available_node_types"]["gpu_worker"].update(min_workers=9, max_workers=8)
    ray_validate(config)
    assert any("min_workers 9 > max_workers 8" in p
               for p in project_problems(yaml.safe_dump(config), pyproject_pins()))


@pytest.mark.parametrize("old, new, expected", [
    ('"ray[default,tune]==2.60.0"', '"ray[default,tune]"', "does not pin ray==2.60.0"),
    ('"optuna==5.0.0"', "optuna", "does not pin optuna==5.0.0"),
    ('"mlflow==3.17.2"', "mlflow", "does not pin mlflow==3.17.2"),
    ('"mlflow==3.17.2"', '"mlflow==3.17.1"', "does not pin mlflow==3.17.2"),
    ('"ray[default,tune]==2.60.0"', '"ray[tune]==2.60.0"', "lacks the 'default' extra"),
    ('"ray[default,tune]==2.60.0"', '"ray[default]==2.60.0"', "lacks the extras ['tune']"),
    ('"ray[default,tune]==2.60.0" "optuna==5.0.0" "mlflow==3.17.2" ', "", "do not install ray==2.60.0"),
    ("-e ~/weightmom-sweeps", "", "do not pip install the project"),
])
def test_project_check_rejects_missing_or_wrong_pins(old, new, expected):
    problems = project_problems(edited(cluster_text(), old, new), pyproject_pins())
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("resources", ["{CPU: 1}", "{}", "{CPU: 0, GPU: 1}"])
def test_project_check_rejects_a_head_that_could_run_trials(resources):
    text = edited(cluster_text(), "resources: {CPU: 0}\n    min_workers", f"resources: {resources}\n    min_workers")
    ray_validate(load(text))   # Ray is fine with it: only the project cares
    assert any(p.startswith("head node type head:") for p in project_problems(text, pyproject_pins()))


def test_project_check_rejects_a_worker_without_instance_profile():
    config = load()
    del config["available_node_types"]["gpu_worker"]["node_config"]["IamInstanceProfile"]
    problems = project_problems(yaml.safe_dump(config), pyproject_pins())
    assert any("gpu_worker: no IamInstanceProfile" in p for p in problems), problems


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_project_check_rejects_ray_start_without_token_auth(key):
    config = load()
    config[key] = [c.replace("export RAY_AUTH_MODE=token;", "") for c in config[key]]
    problems = project_problems(yaml.safe_dump(config), pyproject_pins())
    assert any(p.startswith(f"{key}: `ray start` without RAY_AUTH_MODE=token") for p in problems), problems


def test_project_check_rejects_a_missing_or_in_repo_token_file():
    config = load()
    del config["file_mounts"][DEFAULT_TOKEN_PATH]
    assert any("token file" in p for p in project_problems(yaml.safe_dump(config), pyproject_pins()))
    config["file_mounts"][DEFAULT_TOKEN_PATH] = "ray-token"
    assert any("inside the project" in p for p in project_problems(yaml.safe_dump(config), pyproject_pins()))


def test_project_check_rejects_a_head_without_mlflow():
    config = load()
    config["head_start_ray_commands"] = [c for c in config["head_start_ray_commands"] if "mlflow server" not in c]
    problems = project_problems(yaml.safe_dump(config), pyproject_pins())
    assert "head_start_ray_commands: no `mlflow server`" in problems


@pytest.mark.parametrize("port", [8265, 5000, 6379])
def test_project_check_rejects_open_ports_besides_ssh(port):
    config = load()
    rule = {"FromPort": port, "ToPort": port, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    config["provider"]["security_group"]["IpPermissions"] = [rule]
    problems = project_problems(yaml.safe_dump(config), pyproject_pins())
    assert any("opens more than SSH" in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "# key AKIAIOSFODNN7EXAMPLE",
    "# aws_secret_access_key: wJalrXUtnFEMI",
    "# password=hunter2",
    "# --backend-store-uri postgresql://mlflow:hunter2@db:5432/mlflow",
    "# export RAY_AUTH_TOKEN=3f2a9c",
])
def test_project_check_rejects_credentials(line):
    problems = project_problems(cluster_text() + line + "\n", pyproject_pins())
    assert any("looks like" in p for p in problems), problems
