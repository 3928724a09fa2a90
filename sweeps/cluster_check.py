"""`weightmom check-cluster [cluster.yaml]`: a cluster file's mistakes, found before `ray up` spends money.

Two halves, both offline (no cloud, no credentials, no network):

- Ray's own validation, as `ray up` runs it before its first cloud call: the file against Ray's
  ray-schema.json, then `prepare_config` (merge with the provider's defaults) and `validate_config`
  (the schema again, plus cross-field checks). When Ray rejects the file, that is the one finding:
  the project's checks assume the shape Ray's schema guarantees.
- The project's rules, which Ray's schema cannot see: a head with no CPUs, the driver's exact versions
  of ray/optuna/mlflow, token auth on every `ray start`, only SSH open, MLflow on loopback, instance
  profiles, one image for all nodes, every command valid bash. The credential scan runs on the text
  in every case, since a pasted key is a problem even in a file Ray rejects.

Only yaml and packaging load at import time (the CLI imports this module to build its parser); Ray,
jsonschema and bash come in when a check runs.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from weightmom.errors import require

PINNED = ("ray", "optuna", "mlflow")   # the cluster must run the driver's versions of these
REQUIRED_EXTRAS = {"ray": {"default": "the dashboard and job server that `ray job submit` talks to",
                           "tune": "the sweep runs on Ray Tune"}}
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"   # where Ray looks when RAY_AUTH_TOKEN_PATH is unset
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
START_KEYS = ("head_start_ray_commands", "worker_start_ray_commands")
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                *START_KEYS)
NODE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")   # per node type
RAY_START = re.compile(r"\bray start\b")
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


# -- the command --------------------------------------------------------------------------------------


def add_parser(commands) -> None:
    """`check-cluster [path]`, on the CLI's subparsers object."""
    p = commands.add_parser("check-cluster", help="check a Ray cluster file offline before `ray up`: "
                                                  "Ray's schema and the project's rules")
    p.add_argument("path", nargs="?", default="cluster.yaml", help="the cluster file (default cluster.yaml)")


def run_check_cluster(args: argparse.Namespace) -> int:
    """Print one line per problem and return 1, or `PATH: ok` and 0; a path that is no file is a usage error."""
    path = Path(args.path)
    require(path.exists(), f"{path}: no such file")
    require(path.is_file(), f"{path}: not a file")
    problems = cluster_problems(path)
    print("\n".join(problems) if problems else f"{path}: ok")
    return 1 if problems else 0


def cluster_problems(path: Path) -> list[str]:
    """Every problem in the cluster file, one line each, prefixed with the file; [] when `ray up` may go ahead."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [f"{name}: cannot read it: {getattr(err, 'strerror', None) or err}"]
    config, problem = parse(text, name)
    if problem:
        problems = [problem]
    else:
        problems = [f"{name}: {p}" for p in ray_problems(config) or project_problems(config)]
    return problems + credential_problems(text, name)


def parse(text: str, name: str) -> tuple[dict, str | None]:
    """The file as a mapping, or ({}, the one line that says why it is not one)."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        return {}, f"{where}: not valid YAML: {getattr(err, 'problem', None) or first_line(str(err))}"
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a YAML {type(config).__name__}"
        return {}, f"{name}: not a mapping of cluster settings (got {got})"
    return config, None


def first_line(message: str) -> str:
    return message.strip().split("\n", 1)[0].strip()


# -- Ray's half -----------------------------------------------------------------------------------------


def ray_problems(config: dict) -> list[str]:
    """What Ray's own validation says, as `ray up` runs it before its first cloud call: [] or one line."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        jsonschema.validate(config, ray_schema())   # the file as written first: clearer than prepare_config's KeyError
        with quiet_ray():
            validate_config(prepare_config(copy.deepcopy(config)))
    except jsonschema.ValidationError as err:
        where = key_path(err.absolute_path)
        return [f"{where + ': ' if where else ''}{first_line(err.message)} (Ray's schema)"]
    except Exception as err:   # Ray's cross-field checks raise ValueError; an odd shape can raise anything
        return [f"{first_line(str(err)).rstrip('.') or type(err).__name__} (Ray's validation)"]
    return []


def ray_schema() -> dict:
    """The schema `validate_config` loads, from the installed Ray."""
    import json

    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@contextmanager
def quiet_ray() -> Iterator[None]:
    """prepare_config logs INFO lines ("setting max workers for ...") that are no finding."""
    logger = logging.getLogger("ray.autoscaler")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def key_path(parts) -> str:
    """jsonschema's path as the file spells it: available_node_types.gpu_worker.resources, rules[0]."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


# -- the project's half ------------------------------------------------------------------------------


def project_problems(config: dict) -> list[str]:
    """Everything Ray's schema accepts but this project's cluster must not have; [] when all is well."""
    checks = (install_problems, head_problems, node_type_problems, image_problems, token_problems,
              mlflow_problems, port_problems, bash_problems)
    return list(dict.fromkeys(p for check in checks for p in check(config)))   # once each, in order


def command_lists(config: dict) -> Iterator[tuple[str, list[str]]]:
    """Every command list in the file, with the key path that names it."""
    for key in COMMAND_KEYS:
        yield key, [str(c) for c in config.get(key) or []]
    for name, node_type in (config.get("available_node_types") or {}).items():
        for key in NODE_COMMAND_KEYS:
            if key in node_type:
                yield f"available_node_types.{name}.{key}", [str(c) for c in node_type[key] or []]


def setup_commands_of(config: dict, node_type: str) -> list[str]:
    """The setup commands a node of this type runs, merged the way Ray merges them."""
    common = config.get("setup_commands") or []
    if node_type == config.get("head_node_type"):
        return common + (config.get("head_setup_commands") or [])
    own = config["available_node_types"][node_type].get("worker_setup_commands")
    return own if own is not None else common + (config.get("worker_setup_commands") or [])


def shell_words(command: str) -> list[str]:
    """A command line as the shell splits it, with operators (&&, ;, parentheses) as words of their own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:   # unbalanced quotes: bash_problems reports the command
        return command.split()


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


def node_types_phrase(names: list[str], singular: str, plural: str) -> str:
    """"node type head does" / "node types head, gpu_worker do": findings read as sentences."""
    return f"node type {names[0]} {singular}" if len(names) == 1 else f"node types {', '.join(names)} {plural}"


def home_path(path: str, user: str) -> str:
    return re.sub(r"^~(?=/|$)", f"/home/{user}", str(path)).rstrip("/")


# -- versions and installs ---------------------------------------------------------------------------


def installed_version(name: str) -> str | None:
    """The version here, where the driver and the local `ray` CLI run; None when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_problems(config: dict) -> list[str]:
    """Every pinned package, wherever installed, must be the driver's exact version; every node needs them all."""
    problems = [p for key, commands in command_lists(config) for p in pin_problems(key, commands)]
    user = (config.get("auth") or {}).get("ssh_user", "ubuntu")
    projects = {home_path(remote, user) for remote, local in (config.get("file_mounts") or {}).items()
                if str(local).rstrip("/") in (".", "")}
    if not projects:
        problems.append("file_mounts: the project ('.') is not mounted on the nodes")
    missing: dict[str, list[str]] = {}
    for node_type in config.get("available_node_types") or {}:
        requirements, paths = pip_installs(setup_commands_of(config, node_type))
        names = {canonicalize_name(r.name) for r in requirements}
        for name in (n for n in PINNED if n not in names):
            missing.setdefault(f"{name}=={installed_version(name) or 'X.Y.Z'}", []).append(node_type)
        if projects and not projects & {home_path(p, user) for p in paths}:
            missing.setdefault(f"the project (-e {', '.join(sorted(projects))})", []).append(node_type)
    for what, node_types in missing.items():
        problems.append(f"setup_commands: {node_types_phrase(node_types, 'does', 'do')} not pip install {what}")
    return problems


def pin_problems(key: str, commands: list[str]) -> list[str]:
    """Each pinned package installed by these commands: an exact pin, of the version here, with its extras."""
    problems = []
    for requirement in pip_installs(commands)[0]:
        name = canonicalize_name(requirement.name)
        if name not in PINNED:
            continue
        if problem := version_problem(requirement):
            problems.append(f"{key}: {problem}")
        for extra, why in REQUIRED_EXTRAS.get(name, {}).items():
            if extra not in requirement.extras:
                problems.append(f"{key}: {requirement} lacks the '{extra}' extra ({why})")
    return problems


def version_problem(requirement: Requirement) -> str | None:
    """A Ray cluster needs the driver's versions: `==` the one installed here, nothing looser."""
    installed = installed_version(requirement.name)
    specs = list(requirement.specifier)
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    wanted = f"{requirement.name}{extras}=={installed or 'X.Y.Z'}"
    if len(specs) != 1 or specs[0].operator != "==" or specs[0].version.endswith("*"):
        return f"{requirement} is not an exact pin; write {wanted}, the version installed here"
    try:
        same = installed is None or Version(specs[0].version) == Version(installed)
    except InvalidVersion:
        same = False
    return None if same else (f"{requirement} is not the installed {requirement.name} {installed}; "
                              f"the cluster must run the driver's versions, write {wanted}")


# -- node types --------------------------------------------------------------------------------------


def head_problems(config: dict) -> list[str]:
    """The head runs the driver, the study, the autoscaler and MLflow: no trial may be scheduled there."""
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    if head not in types:
        return [f"available_node_types: no head node type {head!r} to declare resources: {{CPU: 0}}"]
    resources = types[head].get("resources") or {}
    where = f"available_node_types.{head}.resources"
    problems = []
    if resources.get("CPU") != 0:
        got = resources["CPU"] if "CPU" in resources else "none, so Ray advertises the instance's vCPUs"
        problems.append(f"{where}.CPU: the head must have 0 CPUs so no trial runs on it (got {got})")
    if resources.get("GPU", 0) != 0:
        problems.append(f"{where}.GPU: the head must advertise no GPUs so no trial runs on it (got {resources['GPU']})")
    return problems


def node_type_problems(config: dict) -> list[str]:
    """Worker counts Ray compares only in sum, and the cloud identity each node needs for the storage."""
    problems = []
    provider = (config.get("provider") or {}).get("type")
    head = config.get("head_node_type")
    for name, node_type in (config.get("available_node_types") or {}).items():
        node_config = node_type.get("node_config") or {}
        where = f"available_node_types.{name}"
        minimum = node_type.get("min_workers", 0)
        maximum = node_type.get("max_workers", 0 if name == head else config.get("max_workers", 2))
        if minimum > maximum:
            problems.append(f"{where}: min_workers {minimum} > max_workers {maximum}")
        if provider == "aws" and not {"Arn", "Name"} & set(node_config.get("IamInstanceProfile") or {}):
            problems.append(f"{where}.node_config.IamInstanceProfile: missing, so the node cannot reach the S3 storage")
        if provider == "gcp" and name != head and not node_config.get("serviceAccounts"):
            problems.append(f"{where}.node_config.serviceAccounts: missing, so the node cannot reach the GCS storage")
    return problems


def image_problems(config: dict) -> list[str]:
    """Ray needs the same Python on the driver and the workers, hence one image for every node type."""
    provider = (config.get("provider") or {}).get("type")
    images = {name: image_of(provider, node_type.get("node_config") or {})
              for name, node_type in (config.get("available_node_types") or {}).items()}
    if len(set(images.values())) > 1:
        return [f"available_node_types: the node types use different images {images}; "
                "Ray needs the same Python on every node"]
    return []


def image_of(provider: str | None, node_config: dict) -> str | None:
    if provider == "gcp":
        boot = [d for d in node_config.get("disks") or [] if isinstance(d, dict) and d.get("boot")]
        return boot[0].get("initializeParams", {}).get("sourceImage") if boot else None
    return node_config.get("ImageId")


# -- token auth, MLflow, ports -----------------------------------------------------------------------


def token_problems(config: dict) -> list[str]:
    """Ray's launcher does nothing about tokens: each `ray start` must set the mode and have the token file."""
    mounts = {home_path(remote, "USER"): local for remote, local in (config.get("file_mounts") or {}).items()}
    problems = []
    for key in START_KEYS:
        starts = [str(c) for c in config.get(key) or [] if RAY_START.search(str(c))]
        if not starts:
            problems.append(f"{key}: no `ray start`")
        for command in starts:
            problems += start_problems(key, command, mounts)
    return problems + bashrc_problems(config)


def start_problems(key: str, command: str, mounts: dict[str, str]) -> list[str]:
    """One `ray start`: token mode in its own shell, a token file from outside the project, no open dashboard."""
    problems = []
    # Each command runs in a shell of its own: the mode must be set in the same one, before `ray start`.
    mode = re.search(r"\bRAY_AUTH_MODE=token\b", command)
    if not mode or mode.start() > RAY_START.search(command).start():
        problems.append(f"{key}: `ray start` without RAY_AUTH_MODE=token before it in the same command")
    path = re.search(r"\bRAY_AUTH_TOKEN_PATH=(\S+?);?(\s|$)", command)
    token = path.group(1) if path else DEFAULT_TOKEN_PATH
    local = mounts.get(home_path(token, "USER"))
    if local is None:
        problems.append(f"file_mounts: no entry for the token file {token} that `ray start` reads")
    elif not str(local).startswith(("~", "/")):
        problems.append(f"file_mounts: the token file comes from {local!r}, inside the project; keep it outside")
    if re.search(r"--dashboard-host[= ]0\.0\.0\.0", command):
        problems.append(f"{key}: the dashboard listens on 0.0.0.0; reach it with `ray dashboard` instead")
    return problems


def bashrc_problems(config: dict) -> list[str]:
    """`ray exec` and the Ray CLIs on a node send the token only with RAY_AUTH_MODE=token in ~/.bashrc."""
    lacking = [name for name in config.get("available_node_types") or {}
               if not any(re.search(r"export RAY_AUTH_MODE=token.*\.bashrc", c)
                          for c in setup_commands_of(config, name))]
    if not lacking:
        return []
    return [f"setup_commands: {node_types_phrase(lacking, 'does', 'do')} not add `export RAY_AUTH_MODE=token` to "
            "~/.bashrc, so `ray exec` and the Ray CLIs there send no token"]


def mlflow_problems(config: dict) -> list[str]:
    """MLflow's UI has no login: it must listen on the head's loopback only, with job execution off."""
    key = "head_start_ray_commands"
    servers = [str(c) for c in config.get(key) or [] if "mlflow server" in str(c)]
    if not servers:
        return [f"{key}: no `mlflow server`"]
    problems = []
    for command in servers:
        host = mlflow_host(command)
        if host not in LOOPBACK:
            problems.append(f"{key}: mlflow server listens on {host}; bind it to 127.0.0.1 (it has no login: "
                            "reach it with `ray attach cluster.yaml -p 5000`)")
        if "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" not in command:
            problems.append(f"{key}: mlflow server without MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false")
    return problems


def mlflow_host(command: str) -> str:
    """The address `mlflow server` binds: --host/-h, else MLFLOW_HOST, else MLflow's default 127.0.0.1."""
    words = shell_words(command)
    host = None
    for i, word in enumerate(words):
        if word in ("--host", "-h") and i + 1 < len(words):
            host = words[i + 1]
        elif word.startswith("--host="):
            host = word.split("=", 1)[1]
    env = re.search(r"\bMLFLOW_HOST=(\S+)", command)
    return host or (env.group(1).strip("'\"") if env else "127.0.0.1")


def port_problems(config: dict) -> list[str]:
    """Ray adds SSH itself; anything else opened here puts Ray's or MLflow's unauthenticated ports online."""
    rules = ((config.get("provider") or {}).get("security_group") or {}).get("IpPermissions") or []
    problems = []
    for i, rule in enumerate(r if isinstance(r, dict) else {} for r in rules):
        low, high, protocol = rule.get("FromPort"), rule.get("ToPort"), str(rule.get("IpProtocol", "")).lower()
        if (low, high, protocol) == (22, 22, "tcp"):
            continue
        opened = "every port" if protocol == "-1" else f"port {low}" if low == high else f"ports {low}-{high}"
        problems.append(f"provider.security_group.IpPermissions[{i}]: opens {opened}/{protocol}; only SSH (22/tcp) "
                        "may be open, the rest is reached through SSH tunnels")
    return problems


# -- bash and credentials ----------------------------------------------------------------------------


def bash_problems(config: dict) -> list[str]:
    """Ray runs each command as `bash --login -c -i <command>` over SSH; one that does not parse fails late."""
    from ray.autoscaler._private.command_runner import _with_interactive
    from ray.autoscaler._private.util import with_head_node_ip

    bash = shutil.which("bash")
    if bash is None:
        return []
    problems = []
    for key, commands in command_lists(config):
        on_workers = key.startswith("worker_") or key.endswith(".worker_setup_commands")
        as_run = with_head_node_ip(commands, "10.0.0.1") if on_workers else commands
        for i, command in enumerate(as_run):
            inner = shlex.split(_with_interactive(command)[-1])[0]
            result = subprocess.run([bash, "-n", "-c", inner], capture_output=True, text=True)
            if result.returncode != 0:
                message = re.sub(r"^\S*bash: -c: ", "", first_line(result.stderr))
                problems.append(f"{key}[{i}]: not valid bash: {message}")
    return problems


def credential_problems(text: str, name: str) -> list[str]:
    """Keys and passwords do not belong in the file: the nodes have instance profiles, Ray has the token file."""
    found = []
    for what, pattern in CREDENTIAL_PATTERNS.items():
        for match in re.finditer(pattern, text):
            found.append((text.count("\n", 0, match.start()) + 1, what))
    return [f"{name}:{line}: looks like {what}; remove it (the nodes get AWS access from their instance profiles "
            "and Ray's from the token file)" for line, what in sorted(found)]
