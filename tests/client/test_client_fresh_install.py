"""`pip install ./client` into a fresh virtualenv: no TensorFlow or Keras (nor Gradio) installed or imported, and the
CLI from that environment works over both transports against the local server, giving the same images as this
environment's client; `sd-client ui` says which extra it needs.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server_process import running_server

from sd_client import Client

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "keras_cv", "tf_keras", "tensorflow_text", "gradio", "fastapi", "uvicorn")


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT / "client")],
        check=True,
    )
    return venv


def test_nothing_heavy_is_installed_or_imported(fresh_venv):
    installed = subprocess.run(
        [str(fresh_venv / "bin/python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    names = {line.split("==")[0].replace("-", "_") for line in installed.split()}
    assert "sd_client" in names and not names & set(HEAVY)
    code = (
        "import sys, sd_client, sd_client.cli, sd_client.transports.rest, sd_client.transports.grpc_api; "
        f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}])"
    )
    imported = subprocess.run([str(fresh_venv / "bin/python"), "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_the_fresh_cli_works_over_rest_and_grpc(fresh_venv, standin_repository, clip_vocab_path, tmp_path):
    """No --vocab: the installed package carries the CLIP vocabulary, so the chain works offline."""
    with running_server(standin_repository / "models.config") as (rest_url, grpc_target):
        expected = Client(rest_url, vocab_path=clip_vocab_path).generate("a cat", num_steps=2, seed=9)[0].array
        for url in (rest_url, f"grpc://{grpc_target}"):
            out = tmp_path / url.split(":")[0]
            command = [str(fresh_venv / "bin/sd-client"), "generate", "a cat", "--steps", "2", "--seed", "9",
                       "--url", url, "--out", str(out)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            with Image.open(out / "image-0-seed-9.png") as image:
                assert np.abs(np.asarray(image).astype(int) - expected.astype(int)).max() <= 1


def test_the_fresh_cli_says_the_ui_needs_its_extra(fresh_venv):
    command = [str(fresh_venv / "bin/sd-client"), "ui", "--url", "http://127.0.0.1:9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == 'sd-client: error: the web UI needs Gradio, which is not installed: pip install "./client[ui]"'
