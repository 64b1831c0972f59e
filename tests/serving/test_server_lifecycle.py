"""Start-up and shutdown: the exporter's own models.config (/models/ base paths), version policies, warmup, clean exit
on SIGTERM/SIGINT, and start-up failures that name the model folder."""

import shutil
import signal
import socket
import subprocess

import grpc

import numpy as np
import pytest
import requests

from server_models import write_config, write_warmup
from server_process import ServerStartError, free_port, running_server, server_command
from server_requests import GrpcClients, model_url

START_FAILURE_TIMEOUT = 180


def versions(rest_url, model, **selector):
    response = requests.get(model_url(rest_url, model, **selector), timeout=30)
    assert response.status_code == 200, response.text
    return [(entry["version"], entry["state"]) for entry in response.json()["model_version_status"]]


def stop(server, signum):
    server.process.send_signal(signum)
    return server.process.wait(60)


def test_serves_the_exporters_config_and_stops_on_sigterm(standin_repository):
    """models.config says /models/<model>: resolved against the config's folder; warmup records run at load."""
    unset = {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": None}  # the server's own default
    with running_server(standin_repository / "models.config", environment=unset) as server:
        for model in ("text_encoder", "diffusion_model", "decoder"):
            assert versions(server.rest_url, model) == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
            assert versions(server.rest_url, model, label="stock") == [("1", "AVAILABLE")]
        log = server.log()
        assert "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS unset: " in log  # float32 stand-ins: no cache by default
        assert "is not a half-precision export, so oneDNN reorders weights on every call" in log
        assert "Model text_encoder version 1: ran 1 warmup record(s)" in log
        assert "Model decoder version 2: ran 2 warmup record(s)" in log
        assert stop(server, signal.SIGTERM) == 0
        assert "Received SIGTERM" in server.log() and "Server stopped" in server.log()


def test_version_policies_and_no_warmup_and_sigint(standin_repository, extra_models, tmp_path):
    config = write_config(tmp_path / "models.config", {
        "decoder": (standin_repository / "decoder", None, {}),  # no policy: latest, 1 version
        "text_encoder": (standin_repository / "text_encoder", "latest { num_versions: 2 }", {"newest": 2}),
        "diffusion_model": (standin_repository / "diffusion_model", "all {}", {}),
        "strings": (extra_models["strings"], "specific { versions: 1 }", {"only": 1}),
    })  # fmt: skip
    environment = {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}  # oneDNN's weight cache: the user's choice, logged
    with running_server(config, environment=environment, enable_model_warmup=False, host="127.0.0.1") as server:
        assert "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1: oneDNN caches weights" in server.log()
        assert versions(server.rest_url, "decoder") == [("2", "AVAILABLE")]
        assert versions(server.rest_url, "text_encoder") == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
        assert versions(server.rest_url, "text_encoder", label="newest") == [("2", "AVAILABLE")]
        assert versions(server.rest_url, "diffusion_model") == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
        assert versions(server.rest_url, "strings", label="only") == [("1", "AVAILABLE")]
        missing = requests.get(model_url(server.rest_url, "decoder", version=1), timeout=30)
        assert missing.status_code == 404
        assert "warmup record" not in server.log()
        assert stop(server, signal.SIGINT) == 0
        assert "Server stopped" in server.log()


def start_failure(config, *flags):
    """Run the server expecting it to stop during start-up; returns (exit code, output)."""
    command = server_command() + [f"--port={free_port()}", f"--model_config_file={config}", *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=START_FAILURE_TIMEOUT)
    return result.returncode, result.stdout + result.stderr


def copy_model(source, target, versions=(1,)):
    for version in versions:
        shutil.copytree(source / str(version), target / str(version))
    return target


def test_a_folder_that_fails_to_load_stops_start_up_naming_it(standin_repository, tmp_path):
    broken = copy_model(standin_repository / "decoder", tmp_path / "decoder")
    (broken / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = write_config(tmp_path / "models.config", {"decoder": (broken, None, {})})
    code, output = start_failure(config)
    assert code == 1
    assert f"Failed to load model decoder version 1 from {broken / '1'}" in output


def test_a_failing_warmup_record_stops_start_up(standin_repository, tmp_path):
    model = copy_model(standin_repository / "decoder", tmp_path / "decoder")
    write_warmup(model / "1", [("serving_default", {"latent": np.zeros((1, 3), np.float32)})])
    config = write_config(tmp_path / "models.config", {"decoder": (model, None, {})})
    code, output = start_failure(config)
    assert code == 1
    assert f"Failed to warm up model decoder version 1 from {model / '1'}" in output
    assert "input 'latent' has shape [1,3]" in output


def test_a_config_error_stops_start_up(standin_repository, tmp_path):
    """(Every config error is checked in test_server_config.py; here one goes through the command.)"""
    config = write_config(tmp_path / "models.config", {"decoder": (standin_repository / "decoder", None, {"stock": 1})})
    code, output = start_failure(config)
    assert code == 1
    assert "label 'stock' names version 1, which is not among the versions being loaded (2)" in output


def test_running_server_reports_a_failed_start(tmp_path):
    config = write_config(tmp_path / "models.config", {"decoder": (tmp_path / "nowhere", None, {})})
    with pytest.raises(ServerStartError, match="base_path .*nowhere is not a folder"):
        with running_server(config):
            pass


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model_base_path=/models/x"], "unsupported flag(s): --model_base_path"),
        (["--enable_batching"], "unsupported flag(s): --enable_batching"),
        (["--rest_api_port=x"], "expected a port number, got 'x'"),
        (["--enable_model_warmup=maybe"], "expected true or false, got 'maybe'"),
    ],
)
def test_unsupported_or_bad_flags_are_refused_by_name(tmp_path, flags, message):
    command = server_command() + [f"--model_config_file={tmp_path / 'models.config'}", *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("taken", ["port", "rest_api_port"])
def test_a_taken_port_stops_start_up_naming_it(extra_models, tmp_path, taken):
    config = write_config(tmp_path / "models.config", {"strings": (extra_models["strings"], None, {})})
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"port": free_port(), "rest_api_port": free_port(), taken: port}
        command = server_command() + [f"--model_config_file={config}"] + [f"--{k}={v}" for k, v in ports.items()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_FAILURE_TIMEOUT)
    assert result.returncode == 1
    assert f"cannot listen for {'gRPC' if taken == 'port' else 'REST'} on 127.0.0.1:{port}" in result.stderr


def test_grpc_only_as_tensorflow_model_servers_default(extra_models, tmp_path):
    """--rest_api_port defaults to 0: no REST API, gRPC serves, SIGTERM still stops it cleanly."""
    config = write_config(tmp_path / "models.config", {"strings": (extra_models["strings"], None, {})})
    port = free_port()
    process = subprocess.Popen(server_command() + [f"--port={port}", f"--model_config_file={config}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    clients = GrpcClients(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(clients.channel).result(timeout=START_FAILURE_TIMEOUT)
        assert [s.version for s in clients.status("strings").model_version_status] == [1]
    finally:
        clients.close()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Exporting HTTP/REST API" not in output and "Server stopped" in output
