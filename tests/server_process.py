"""Run sd-model-server as a subprocess for a test: free ports, wait until every model is AVAILABLE, stop it.

    with running_server(models_dir / "models.config", rest_api_timeout_in_ms=5000) as (rest_url, grpc_target):
        requests.post(f"{rest_url}/v1/models/decoder:predict", json=...)

Flags are keyword arguments in tensorflow_model_server's spelling (booleans become true/false). The yielded value
unpacks as (rest_url, grpc_target) and also carries .process and .log_path (the server's stdout and stderr, removed
when the server stops).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 180  # loading and warming up; other test runs share the 2 cores
STOP_TIMEOUT_SECONDS = 30
_BIND_ERRORS = ("address already in use", "cannot listen", "failed to bind")


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message ends with its log."""


class RunningServer(tuple):
    """(rest_url, grpc_target), plus the process and its log file."""

    def __new__(cls, rest_url, grpc_target, process, log_path):
        server = super().__new__(cls, (rest_url, grpc_target))
        server.process = process
        server.log_path = log_path
        return server

    @property
    def rest_url(self):
        return self[0]

    @property
    def grpc_target(self):
        return self[1]

    def log(self):
        return Path(self.log_path).read_text(errors="replace")


def server_command():
    """The sd-model-server console script of this interpreter's environment (python -m sd_serving if absent)."""
    script = Path(sys.executable).parent / "sd-model-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("sd-model-server")
    return [found] if found else [sys.executable, "-m", "sd_serving"]


def free_port(host=HOST):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def flag_arguments(flags):
    arguments = []
    for name, value in flags.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        arguments.append(f"--{name}={value}")
    return arguments


def model_names(config_path):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(Path(config_path).read_text(), config)
    return [entry.name for entry in config.model_config_list.config]


@contextlib.contextmanager
def running_server(
    config_path, attempts=3, start_timeout=START_TIMEOUT_SECONDS, environment=None, host=HOST, ports=None, **flags
):
    """Start the server on free ports (retrying if another process took one), yield, then SIGTERM it.

    environment: variables added to this process's environment for the server (None unsets one).
    host: the address it binds (another loopback address, 127.0.0.2 ..., makes it a host of its own);
    ports: (grpc_port, rest_port) to use instead of free ones (a restarted replica keeps its address)."""
    for attempt in range(1, attempts + 1):
        merged = dict(os.environ, **(environment or {}))
        server = _start(config_path, flags, {k: v for k, v in merged.items() if v is not None}, host, ports)
        try:
            _wait_until_available(server, model_names(config_path), start_timeout)
        except ServerStartError as error:
            _stop(server.process)
            os.unlink(server.log_path)  # its tail is in the error
            if attempt < attempts and any(text in str(error).lower() for text in _BIND_ERRORS):
                continue
            raise
        break
    try:
        yield server
    finally:
        _stop(server.process)
        os.unlink(server.log_path)


def _start(config_path, flags, environment, host=HOST, ports=None):
    grpc_port, rest_port = ports or (free_port(host), free_port(host))
    while rest_port == grpc_port:
        rest_port = free_port(host)
    if host != HOST:
        flags = dict(flags, host=host)
    command = server_command() + flag_arguments(
        dict({"port": grpc_port, "rest_api_port": rest_port, "model_config_file": config_path}, **flags)
    )
    log_file = tempfile.NamedTemporaryFile("w", prefix="sd-model-server-", suffix=".log", delete=False)
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment
    )
    log_file.close()
    return RunningServer(f"http://{host}:{rest_port}", f"{host}:{grpc_port}", process, log_file.name)


def _wait_until_available(server, models, timeout):
    deadline = time.monotonic() + timeout
    pending = list(models)
    while pending:
        if server.process.poll() is not None:
            raise ServerStartError(f"sd-model-server exited with {server.process.returncode}:\n{_tail(server)}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"sd-model-server not ready after {timeout} s:\n{_tail(server)}")
        try:
            response = requests.get(f"{server.rest_url}/v1/models/{pending[0]}", timeout=5)
            states = [entry["state"] for entry in response.json()["model_version_status"]]
            if response.ok and states and all(state == "AVAILABLE" for state in states):
                pending.pop(0)
                continue
        except (requests.ConnectionError, requests.Timeout, ValueError, KeyError):
            pass
        time.sleep(0.2)


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(server, lines=40):
    return "\n".join(server.log().splitlines()[-lines:])
