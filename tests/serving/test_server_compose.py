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
    assert set(resolved["services"]) == {"serving", "serving-cpu"}
    assert resolved["services"]["serving"]["image"] == "tensorflow/serving:2.21.0-gpu"
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


@pytest.mark.parametrize("service", ["serving", "serving-cpu"])
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


@pytest.mark.parametrize("service", ["serving", "serving-cpu"])
def test_mounts_are_read_only(resolved, service):
    volumes = {volume.split(":")[1]: volume for volume in resolved["services"][service]["volumes"]}
    assert volumes["/models"] == f"{PROJECT_ROOT / 'models'}:/models:ro"
    assert volumes["/etc/tf-serving/monitoring.config"].endswith(":ro")


def test_the_monitoring_config_enables_prometheus():
    text = (PROJECT_ROOT / "docker" / "monitoring.config").read_text()
    body = re.sub(r"#.*", "", text)
    assert re.search(r"prometheus_config\s*{[^}]*enable:\s*true", body)
    assert re.search(r'path:\s*"/monitoring/prometheus/metrics"', body)


@pytest.mark.parametrize("service", ["serving", "serving-cpu"])
def test_ports_are_on_loopback_by_default(resolved, service):
    assert sorted(resolved["services"][service]["ports"]) == ["127.0.0.1:8500:8500/tcp", "127.0.0.1:8501:8501/tcp"]


def test_bind_address_and_ports_can_be_opened_on_purpose():
    opened = compose_config(SD_BIND_ADDRESS="0.0.0.0", REST_PORT="9501")
    assert sorted(opened["services"]["serving"]["ports"]) == ["0.0.0.0:8500:8500/tcp", "0.0.0.0:9501:8501/tcp"]


def test_one_nvidia_gpu_is_reserved_and_memory_grows(resolved):
    gpu = resolved["services"]["serving"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert gpu["environment"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "deploy" not in resolved["services"]["serving-cpu"]


def test_the_cpu_service_caches_onednn_weights_only_when_asked(resolved):
    assert resolved["services"]["serving-cpu"]["environment"] == {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "0"}
    cached = compose_config(TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="1")
    assert cached["services"]["serving-cpu"]["environment"] == {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}


@pytest.mark.parametrize("service", ["serving", "serving-cpu"])
def test_health_check_waits_long_for_the_diffusion_model(resolved, service):
    check = resolved["services"][service]["healthcheck"]
    assert "curl" not in " ".join(check["test"]) and "wget" not in " ".join(check["test"]), "absent in the CPU image"
    assert "/v1/models/diffusion_model" in " ".join(check["test"])
    minutes = re.fullmatch(r"(\d+)m", check["start_period"])
    assert minutes and int(minutes.group(1)) >= 10


def health_check_command(rest_port, model="diffusion_model"):
    with open(COMPOSE) as handle:
        test = yaml.safe_load(handle)["x-serving"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    return ["bash", "-c", test[3].replace("8501", str(rest_port)).replace("diffusion_model", model)]


def test_the_health_check_command_reads_tf_servings_status_endpoint(server):
    """Run the container's check against the local server, which answers GET /v1/models/NAME as TF Serving does."""
    rest_port = server.rest_url.rsplit(":", 1)[1]
    healthy = subprocess.run(health_check_command(rest_port), capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    unknown = subprocess.run(health_check_command(rest_port, "no_such_model"), capture_output=True, timeout=30)
    assert unknown.returncode != 0
