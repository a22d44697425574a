"""The Docker images, the Ray cluster launcher config and the KubeRay manifest are consistent.

No Docker engine or Kubernetes runs here: these checks catch what would break a build or a
launch before anyone pays for nodes - a Ray version drifting from pyproject, a COPY of a file
that moved, an experiment file or command that does not exist, a port opened to the world.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
LAUNCHER = DOCKER / "cluster.yaml"
KUBERAY = DOCKER / "kuberay-rayjob.yaml"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ray_pin() -> str:
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"ray(\[[^\]]*\])?==([\w.]+)", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError("pyproject.toml pins no ray==X.Y.Z dependency")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _kuberay_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d]


def _rayjob() -> dict:
    (job,) = [d for d in _kuberay_docs() if d["kind"] in ("RayJob", "RayCluster")]
    return job


def _experiment_files(text: str) -> set[str]:
    return set(re.findall(r"tune_configs/[\w.-]+\.ya?ml", text))


def test_expected_files_exist():
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.cpu", "Dockerfile.gpu"} <= names
    assert LAUNCHER.is_file() and KUBERAY.is_file()
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_image_pins_pyproject_ray(dockerfile):
    froms = [args for word, args in _instructions(dockerfile) if word == "FROM"]
    assert froms, f"{dockerfile.name} has no FROM line"
    flavour = dockerfile.suffix.lstrip(".")  # cpu | gpu
    for image in froms:
        m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(\w+)", image.split()[0])
        assert m, f"{dockerfile.name}: FROM {image!r} is not an official pinned Ray image"
        assert m.group(1) == _ray_pin(), (
            f"{dockerfile.name}: FROM pins Ray {m.group(1)}, pyproject pins {_ray_pin()}"
        )
        python = f"{m.group(2)}.{m.group(3)}"
        assert f">={python}" in _pyproject()["project"]["requires-python"]
        assert m.group(4) == flavour


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist_and_are_not_ignored(dockerfile):
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [args for word, args in _instructions(dockerfile) if word == "COPY"]
    assert copies, f"{dockerfile.name} copies nothing into the image"
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src!r} is missing"
            assert src.rstrip("/") not in ignored, f"{src!r} is excluded by .dockerignore"
    copied = {s.rstrip("/") for a in copies for s in shlex.split(a)[:-1]}
    # Everything `pip install .` needs: the metadata, the readme it names, both packages.
    assert {"pyproject.toml", _pyproject()["project"]["readme"], "mixing_env", "rl_models",
            "tune_configs"} <= copied


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_the_package_and_runs_its_entry_point(dockerfile):
    runs = " ".join(args for word, args in _instructions(dockerfile) if word == "RUN")
    assert re.search(r"pip install [^&]*-e \.", runs), "the package is not pip-installed"
    for script in _pyproject()["project"]["scripts"]:
        assert f"{script} --help" in runs, f"the image build does not smoke-test `{script}`"
    for constraint in re.findall(r"pip install[^&]*?\s-c\s+(\S+)", runs):
        assert (ROOT / constraint).is_file(), f"constraints file {constraint} is missing"
    if dockerfile.name == "Dockerfile.cpu":
        assert "-c constraints/cpu.txt" in runs
        assert "download.pytorch.org/whl/cpu" in runs
    else:
        assert "constraints/cpu.txt" not in runs, "the GPU image must not pin the CPU torch"
    env = " ".join(args for word, args in _instructions(dockerfile) if word == "ENV")
    assert "RAY_AUTH_MODE=token" in env


def test_entry_point_is_declared():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts.get("deepmixing") == "rl_models.app.cli:main"
    module, _, func = scripts["deepmixing"].partition(":")
    source = ROOT / (module.replace(".", "/") + ".py")
    if not source.is_file():
        pytest.xfail(f"{source.relative_to(ROOT)} (the CLI) has not landed yet")
    assert re.search(rf"^def {func}\(", source.read_text(), re.M)


def test_launcher_config_validates_against_rays_schema():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load(LAUNCHER.read_text())
    validate_config(fillout_defaults(config))  # raises on any schema error
    assert set(config["available_node_types"]) >= {config["head_node_type"]}
    assert len(config["available_node_types"]) >= 2, "expected head and worker node types"


def test_launcher_keeps_auth_on_and_dashboard_local():
    config = yaml.safe_load(LAUNCHER.read_text())
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in LAUNCHER.read_text()
    for cmds in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        starts = [c for c in cmds if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_launcher_mounts_shared_storage_for_cache_and_checkpoints():
    config = yaml.safe_load(LAUNCHER.read_text())
    assert "-v /shared:/shared" in config["docker"]["run_options"]
    assert any("/shared/cache" in c and "/shared/runs" in c
               for c in config["setup_commands"])


def test_kuberay_pins_pyproject_ray_and_runs_the_cluster_experiment():
    job = _rayjob()
    spec = job["spec"]
    cluster = spec["rayClusterSpec"] if job["kind"] == "RayJob" else spec
    assert cluster["rayVersion"] == _ray_pin()
    assert "deepmixing train tune_configs/cluster.yaml --address auto" in spec["entrypoint"]
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    images = [c["image"] for g in [head, *cluster["workerGroupSpecs"]]
              for c in g["template"]["spec"]["containers"]]
    assert images and all("deepmixing" in i for i in images)


def test_kuberay_mounts_claims_for_cache_and_checkpoints_in_every_pod():
    docs = _kuberay_docs()
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert len(claims) >= 2
    job = _rayjob()
    cluster = job["spec"]["rayClusterSpec"] if job["kind"] == "RayJob" else job["spec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        used = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert used == claims, f"pod volumes {used} != declared claims {claims}"
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert {"/shared/cache", "/shared/runs"} <= mounts


def test_kuberay_exposes_no_port_beyond_the_cluster_network():
    for doc in _kuberay_docs():
        text = yaml.safe_dump(doc)
        assert doc["kind"] not in ("Service", "Ingress", "Route"), f"{doc['kind']} declared"
        assert "NodePort" not in text and "LoadBalancer" not in text
        assert "hostPort" not in text and "hostNetwork: true" not in text
        assert "0.0.0.0" not in text


@pytest.mark.parametrize("path", [LAUNCHER, KUBERAY, *DOCKERFILES], ids=lambda p: p.name)
def test_experiment_files_named_by_deploy_files_exist(path):
    named = _experiment_files(path.read_text())
    for rel in named:
        assert (ROOT / rel).is_file(), f"{path.name} names {rel}, which does not exist"


def test_cluster_experiment_uses_shared_storage_and_fault_tolerance():
    experiment = yaml.safe_load((ROOT / "tune_configs" / "cluster.yaml").read_text())
    assert str(experiment["storage_path"]).startswith("/shared/runs")
    assert str(experiment["env"]["dataset_dir"]).startswith("/shared/cache")
    ft = experiment["fault_tolerance"]
    assert ft["restart_failed_env_runners"] is True
    assert int(ft["max_failures"]) > 0
    assert int(experiment["checkpoint"]["frequency"]) >= 1
