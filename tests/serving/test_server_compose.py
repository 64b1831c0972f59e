"""compose.yaml: valid for Debian's docker-compose (`docker-compose config` needs no engine), and the TF Serving
flags, mounts, ports, GPU reservation and health check the deployment relies on."""

import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = PROJECT_ROOT / "compose.yaml"
DOCKER_COMPOSE = shutil.which("docker-compose")
REST_DEFAULT_TIMEOUT_MS = 30000
GPU_SERVICES = ("serving", "serving-gpu1", "serving-gpu2", "serving-gpu3")  # one per GPU, device ids 0-3


def compose_config(**environment):
    """`docker-compose config` of the project: the file validated, .env and variables resolved."""
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose; `make install` does it)")
    ours = ("COMPOSE_", "SD_BIND", "TF_SERV", "TF_ONEDNN")  # compose's and compose.yaml's: only the test sets them
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    env.update(environment)
    result = subprocess.run(
        [DOCKER_COMPOSE, "--profile", "cpu", "config"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def resolved():
    return compose_config()


def flags(service):
    return dict(argument.removeprefix("--").split("=", 1) for argument in service["command"])


def test_docker_compose_accepts_the_file_and_resolves_both_services(resolved):
    assert set(resolved["services"]) == {"serving", "serving-cpu", *GPU_SERVICES[1:]}
    for service in GPU_SERVICES:
        assert resolved["services"][service]["image"] == "tensorflow/serving:2.21.0-gpu"
    for service in GPU_SERVICES[1:]:
        assert resolved["services"][service]["profiles"] == ["gpus"], "extra GPUs start only when asked for"
    assert resolved["services"]["serving-cpu"]["image"] == "tensorflow/serving:2.21.0"
    assert resolved["services"]["serving-cpu"]["profiles"] == ["cpu"]
    assert "profiles" not in resolved["services"]["serving"], "`docker compose up` must start the GPU service"


def test_the_images_live_in_env_and_match_the_exporters_tensorflow():
    settings = dict(
        line.split("=", 1) for line in (PROJECT_ROOT / ".env").read_text().splitlines() if re.match(r"^\w+=", line)
    )
    gpu, cpu = settings["TF_SERVING_IMAGE"], settings["TF_SERVING_CPU_IMAGE"]
    assert gpu == "tensorflow/serving:2.21.0-gpu"
    assert cpu == gpu.removesuffix("-gpu")
    tensorflow_minor = ".".join(version("tensorflow").split(".")[:2])
    assert gpu.split(":")[1].startswith(tensorflow_minor + "."), "serving image and exporter TensorFlow differ"
    assert "2.21.0" not in COMPOSE.read_text(), "the image version belongs in .env only"


@pytest.mark.parametrize("service", [*GPU_SERVICES, "serving-cpu"])
def test_tf_serving_flags(resolved, service):
    settings = flags(resolved["services"][service])
    assert settings["model_config_file"] == "/models/models.config"
    assert int(settings["model_config_file_poll_wait_seconds"]) > 0
    assert settings["allow_version_labels_for_unavailable_models"] == "true"
    assert int(settings["rest_api_timeout_in_ms"]) >= 20 * REST_DEFAULT_TIMEOUT_MS
    assert settings["enable_model_warmup"] == "true"
    assert settings["enable_batching"] == "true"
    assert settings["enable_per_model_batching_parameters"] == "true"
    assert "batching_parameters_file" not in settings, "one file for all models would batch diffusion_model too"
    assert not any(name.startswith("xla_") for name in settings), "the export does not use XLA"
    assert settings["monitoring_config_file"] == "/etc/tf-serving/monitoring.config"


@pytest.mark.parametrize("service", [*GPU_SERVICES, "serving-cpu"])
def test_mounts_are_read_only(resolved, service):
    volumes = {volume.split(":")[1]: volume for volume in resolved["services"][service]["volumes"]}
    assert volumes["/models"] == f"{PROJECT_ROOT / 'models'}:/models:ro"
    assert volumes["/etc/tf-serving/monitoring.config"].endswith(":ro")
    assert volumes["/etc/tf-serving/ready.sh"] == f"{PROJECT_ROOT / 'kubernetes/base/ready.sh'}:/etc/tf-serving/ready.sh:ro"


def test_the_monitoring_config_enables_prometheus():
    text = (PROJECT_ROOT / "kubernetes" / "base" / "monitoring.config").read_text()
    body = re.sub(r"#.*", "", text)
    assert re.search(r"prometheus_config\s*{[^}]*enable:\s*true", body)
    assert re.search(r'path:\s*"/monitoring/prometheus/metrics"', body)


@pytest.mark.parametrize("service", ["serving", "serving-cpu"])
def test_ports_are_on_loopback_by_default(resolved, service):
    assert sorted(resolved["services"][service]["ports"]) == ["127.0.0.1:8500:8500/tcp", "127.0.0.1:8501:8501/tcp"]


def test_bind_address_and_ports_can_be_opened_on_purpose():
    opened = compose_config(SD_BIND_ADDRESS="0.0.0.0", REST_PORT="9501")
    assert sorted(opened["services"]["serving"]["ports"]) == ["0.0.0.0:8500:8500/tcp", "0.0.0.0:9501:8501/tcp"]


@pytest.mark.parametrize("gpu_index", range(len(GPU_SERVICES)))
def test_each_gpu_service_has_its_own_device_and_ports_side_by_side(resolved, gpu_index):
    gpu = resolved["services"][GPU_SERVICES[gpu_index]]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "device_ids": [str(gpu_index)], "capabilities": ["gpu"]}
    ]
    assert gpu["environment"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    grpc, rest = 8500 + 2 * gpu_index, 8501 + 2 * gpu_index
    assert sorted(gpu["ports"]) == [f"127.0.0.1:{grpc}:8500/tcp", f"127.0.0.1:{rest}:8501/tcp"]
    assert "deploy" not in resolved["services"]["serving-cpu"]


def test_the_cpu_service_caches_onednn_weights_only_when_asked(resolved):
    assert resolved["services"]["serving-cpu"]["environment"] == {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "0"}
    cached = compose_config(TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="1")
    assert cached["services"]["serving-cpu"]["environment"] == {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}


@pytest.mark.parametrize("service", [*GPU_SERVICES, "serving-cpu"])
def test_health_check_runs_the_readiness_script_on_the_served_config(resolved, service):
    check = resolved["services"][service]["healthcheck"]
    assert check["test"] == ["CMD", "bash", "/etc/tf-serving/ready.sh", "/models/models.config"]
    minutes = re.fullmatch(r"(\d+)m", check["start_period"])
    assert minutes and int(minutes.group(1)) >= 10
    other = compose_config(SD_MODEL_CONFIG="text_to_image.config")["services"][service]["healthcheck"]["test"]
    assert other[-1] == "/models/text_to_image.config"


def test_the_health_check_command_reads_tf_servings_status_endpoint(server, server_config):
    """Run the container's check (ready.sh) against the local server, which answers GET /v1/models/NAME as TF Serving
    does; tests/scaleout/test_readiness.py covers the states it refuses."""
    rest_port = server.rest_url.rsplit(":", 1)[1]
    script = PROJECT_ROOT / "kubernetes" / "base" / "ready.sh"
    healthy = subprocess.run(["bash", script, server_config, rest_port], capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
