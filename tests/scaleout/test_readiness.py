"""kubernetes/base/ready.sh, the compose health check and the Kubernetes startup/readiness probe: ready only when every
model of the config has a version AVAILABLE, none is still loading and none failed to load.

TF Serving's status endpoint answers 200 while a version is LOADING (get_model_status_impl.cc puts every state into an
OK response), so the script must read the states. A stand-in HTTP server plays TF Serving's answers for each state;
tests/serving/test_server_compose.py runs the script against the local server."""

import http.server
import json
import subprocess
import threading

import pytest
from manifests import KUBERNETES

SCRIPT = KUBERNETES / "base" / "ready.sh"
CONFIG = """model_config_list {
  config {
    name: "text_encoder"
    base_path: "/models/text_encoder"
    model_platform: "tensorflow"
  }
  config {
    name: 'diffusion_model'
    base_path: '/models/diffusion_model'
    model_platform: "tensorflow"
    version_labels { key: "stock" value: 1 }
  }
}
"""


def status(*versions):
    """TF Serving's REST status body: (version, state[, error_code]) per version, pretty-printed as it prints it."""
    entries = [
        {"version": str(v[0]), "state": v[1], "status": {"error_code": v[2] if len(v) > 2 else "OK", "error_message": ""}}
        for v in versions
    ]
    return 200, json.dumps({"model_version_status": entries}, indent=1)


class FakeStatus(http.server.BaseHTTPRequestHandler):
    answers = {}

    def do_GET(self):
        code, body = self.answers.get(self.path, (404, '{ "error": "Could not find any versions of model" }'))
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeStatus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    return path


def ready(server, config_file, **answers):
    FakeStatus.answers = {f"/v1/models/{model}": answer for model, answer in answers.items()}
    port = str(server.server_address[1])
    result = subprocess.run(["bash", SCRIPT, config_file, port], capture_output=True, text=True, timeout=30)
    return result.returncode == 0, result.stderr


AVAILABLE = status((1, "AVAILABLE"))


def test_ready_when_every_model_is_available(fake_server, config_file):
    assert ready(fake_server, config_file, text_encoder=AVAILABLE, diffusion_model=AVAILABLE) == (True, "")


@pytest.mark.parametrize(
    "diffusion_model, reason",
    [
        (status((1, "LOADING")), "no version AVAILABLE"),  # 200, but loading: the case the HTTP code misses
        (status((1, "START")), "no version AVAILABLE"),
        (status((1, "AVAILABLE"), (2, "LOADING")), "a version is still loading"),  # a label may point at version 2
        (status((1, "AVAILABLE"), (2, "END", "NOT_FOUND")), "a version failed to load"),
        ((404, '{ "error": "Could not find any versions of model diffusion_model" }'), "HTTP 404"),
        ((503, '{ "error": "unavailable" }'), "HTTP 503"),
    ],
)
def test_not_ready(fake_server, config_file, diffusion_model, reason):
    is_ready, message = ready(fake_server, config_file, text_encoder=AVAILABLE, diffusion_model=diffusion_model)
    assert not is_ready
    assert f"diffusion_model: {reason}" in message


def test_a_version_unloaded_on_purpose_does_not_matter(fake_server, config_file):
    answer = status((1, "END"), (2, "AVAILABLE"))
    assert ready(fake_server, config_file, text_encoder=answer, diffusion_model=AVAILABLE)[0]


def test_every_model_of_the_config_is_asked(fake_server, config_file):
    assert not ready(fake_server, config_file, diffusion_model=AVAILABLE)[0]  # text_encoder unknown
    assert not ready(fake_server, config_file, text_encoder=AVAILABLE)[0]


def test_a_closed_port_or_an_empty_config_is_not_ready(tmp_path, config_file):
    closed = subprocess.run(["bash", SCRIPT, config_file, "1"], capture_output=True, text=True, timeout=30)
    assert closed.returncode != 0
    empty = tmp_path / "empty.config"
    empty.write_text("model_config_list {}\n")
    result = subprocess.run(["bash", SCRIPT, empty, "1"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "no model names" in result.stderr
