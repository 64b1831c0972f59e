"""The real thing: tensorflow/serving's GPU image (compose.yaml) serving an export, answering as the local server does.

Marked `gpu`: it needs an NVIDIA GPU, the NVIDIA container toolkit and a Docker engine, which this project's
development and CI machines do not have, so it is skipped there (run it on a GPU host with SD_RUN_GPU_TESTS=1).
It has never been run: the GPU/Docker half of the deployment is validated here only by `docker-compose config`.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from server_process import running_server

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        os.environ.get("SD_RUN_GPU_TESTS") != "1",
        reason="needs an NVIDIA GPU and a Docker engine (set SD_RUN_GPU_TESTS=1 on a GPU host); not run here",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 900


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=["models.config", "text_to_image.config"])
def tf_serving(request, standin_repository, tmp_path_factory):
    models = tmp_path_factory.mktemp("gpu") / "models"
    shutil.copytree(standin_repository, models)
    env = dict(
        os.environ,
        MODELS=str(models),
        SD_MODEL_CONFIG=request.param,
        REST_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        COMPOSE_PROJECT_NAME=f"sdtest{os.getpid()}",
    )
    compose = ["docker", "compose", "-f", str(ROOT / "compose.yaml")]
    subprocess.run([*compose, "up", "-d", "serving"], env=env, check=True)
    rest_url = f"http://127.0.0.1:{env['REST_PORT']}"
    model = "text_to_image" if request.param == "text_to_image.config" else "diffusion_model"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                status = requests.get(f"{rest_url}/v1/models/{model}", timeout=5).json()
                if any(v["state"] == "AVAILABLE" for v in status.get("model_version_status", [])):
                    break
            except requests.RequestException:
                pass
            time.sleep(5)
        else:
            pytest.fail("TF Serving did not load the models in time")
        yield request.param, models, rest_url, f"127.0.0.1:{env['GRPC_PORT']}"
    finally:
        subprocess.run([*compose, "down"], env=env)


def test_tf_serving_gives_the_local_servers_images(tf_serving):
    from sd_client import Client

    config, models, rest_url, grpc_target = tf_serving
    with running_server(models / config) as local:
        for label in ("stock", "tuned"):
            expected = Client(local.rest_url).generate("a cat", num_images=2, num_steps=3, seed=5, label=label)
            for url in (rest_url, f"grpc://{grpc_target}"):
                actual = Client(url).generate("a cat", num_images=2, num_steps=3, seed=5, label=label)
                for a, e in zip(actual, expected):
                    assert a.seed == e.seed
                    assert np.abs(a.array.astype(int) - e.array.astype(int)).max() <= 1
