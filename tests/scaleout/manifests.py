"""Rendering and reading the Kubernetes manifests (kubernetes/) and the compose file, for the consistency tests."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir() if path.is_dir())
KUBECTL = shutil.which("kubectl")
CONFIG_DIR = "/etc/tf-serving"  # where the pods mount models.config, ready.sh and monitoring.config


def kustomize(path):
    """`kubectl kustomize PATH` (kustomize build), as a list of objects."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (https://kubernetes.io/docs/tasks/tools/; `make install` tries apt)")
    result = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [item for item in yaml.safe_load_all(result.stdout) if item]


def render(name):
    """base or an overlay's name."""
    return kustomize(KUBERNETES / "base" if name == "base" else KUBERNETES / "overlays" / name)


def of_kind(objects, kind):
    return [item for item in objects if item["kind"] == kind]


def named(objects, kind, name):
    (found,) = [item for item in of_kind(objects, kind) if item["metadata"]["name"] == name]
    return found


def env_settings():
    """The project's .env (what docker compose reads): NAME=value lines."""
    lines = (ROOT / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))


def compose_file():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def flags(arguments):
    return dict(argument.removeprefix("--").split("=", 1) for argument in arguments)


def container(deployment):
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def mounted_config_maps(deployment, objects):
    """{key: value} of every ConfigMap projected into CONFIG_DIR."""
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    data = {}
    for source in volumes[mount["name"]]["projected"]["sources"]:
        data.update(named(objects, "ConfigMap", source["configMap"]["name"])["data"])
    return data


def parse_model_config(text):
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(text, config)
    return config


def model_entries(text):
    """name -> (base_path, versions of the specific policy, labels) of a models.config text."""
    return {
        entry.name: (entry.base_path, list(entry.model_version_policy.specific.versions), dict(entry.version_labels))
        for entry in parse_model_config(text).model_config_list.config
    }
