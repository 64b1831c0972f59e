"""Fixtures of the UI tests: the stand-in models behind the local model server (REST), and `sd-client ui` in front
of it as a user starts it, on a free port.

    ui.url          http://127.0.0.1:PORT  (the page at /, the A1111 API at /sdapi/v1/)
    ui.rest_url     the model server behind it
    ui.temp_dir     its temporary folder (TMPDIR)
"""

import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import types

import pytest
import requests

TESTS = pathlib.Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # server_process.py lives in tests/
    sys.path.insert(0, str(TESTS))

from server_process import HOST, free_port, running_server  # noqa: E402

LABELS = ("stock", "tuned")  # the stand-in repository's labels: version 1 and version 2
UI_START_TIMEOUT_SECONDS = 120


@contextlib.contextmanager
def running_ui(url, vocab_path, labels=LABELS, temp_dir=None):
    """`sd-client ui --url URL --label ...` on a free port until the A1111 options endpoint answers; then stopped.
    temp_dir: its temporary folder (TMPDIR), so a test can see what it leaves there."""
    port = free_port()
    env = None if temp_dir is None else {**os.environ, "TMPDIR": str(temp_dir)}
    command = [str(pathlib.Path(sys.executable).parent / "sd-client"), "ui", "--url", url, "--port", str(port),
               "--vocab", str(vocab_path)] + [arg for label in labels for arg in ("--label", label)]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            base = f"http://{HOST}:{port}"
            deadline = time.monotonic() + UI_START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"sd-client ui did not start:\n{log.read()[-3000:]}")
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"{base}/sdapi/v1/options", timeout=5).ok:
                        break
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(30)


@pytest.fixture(scope="session")
def ui(standin_repository, clip_vocab_path, tmp_path_factory):
    temp_dir = tmp_path_factory.mktemp("ui_tmp")
    with running_server(standin_repository / "models.config") as server:
        with running_ui(server.rest_url, clip_vocab_path, temp_dir=temp_dir) as url:
            yield types.SimpleNamespace(url=url, rest_url=server.rest_url, vocab=clip_vocab_path, temp_dir=temp_dir)
