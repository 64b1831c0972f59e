"""`make demo` (sd_serving.demo): an existing export served by sd-model-server, PNGs from `sd-client generate`, and
the server stopped afterwards: after success, after a failed step, on Ctrl-C and on SIGTERM. The export step's
fallback to random weights is checked with a stand-in for sd-export (the real one would build KerasCV's models)."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sd_serving import demo
from server_models import write_config

SERVER_LINE = re.compile(r"sd-model-server pid (\d+) loading .*REST 127\.0\.0\.1:(\d+)")
DEMO_TIMEOUT = 300
SPLIT_MODELS = ("text_encoder", "diffusion_model", "decoder")


def demo_command(models_dir, out, *extra):
    """No --clip-vocab: the demo's client tokenizes with the vocabulary shipped inside the project (offline)."""
    return [sys.executable, "-m", "sd_serving.demo", "--models-dir", str(models_dir), "--out", str(out), *extra]


def server_of(output):
    match = SERVER_LINE.search(output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def assert_stopped(pid, rest_port):
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rest_port), timeout=2).close()


@pytest.fixture(scope="module")
def one_version_repository(standin_repository, tmp_path_factory):
    """models.config over version 1 of the stand-ins only: half the loading time for the failure-path tests."""
    models_dir = tmp_path_factory.mktemp("demo_models")
    write_config(
        models_dir / "models.config",
        {name: (standin_repository / name, "specific { versions: 1 }", {}) for name in SPLIT_MODELS},
    )
    return models_dir


@pytest.mark.parametrize("switch,model", [((), "diffusion_model"), (("--text-to-image",), "text_to_image")],
                         ids=["models.config", "text_to_image.config"])  # fmt: skip
def test_demo_serves_an_existing_export_generates_and_stops(standin_repository, tmp_path, switch,
                                                            model):  # fmt: skip
    out = tmp_path / "out"
    command = demo_command(standin_repository, out, "--prompt", "a red fox", "--steps", "2",
                           "--seed", "7", "-n", "2", *switch)  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(models.config exists)" in result.stdout  # no export: the repository was there
    images = {}
    for seed in (7, 8):
        png = (out / f"image-{seed - 7}-seed-{seed}.png").read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            assert (image.format, image.size) == ("PNG", (128, 128))
            parameters = image.text["parameters"]
            assert "a red fox" in parameters and f"Seed: {seed}" in parameters and f"Model: {model}" in parameters
            images[seed] = np.asarray(image.convert("RGB"))
    assert not np.array_equal(images[7], images[8])
    assert (out / "grid.png").is_file()
    assert f"{model} [1, 2]" in (out / demo.SERVER_LOG).read_text()
    assert "RANDOM" not in result.stderr  # the stand-ins' provenance does not say random weights
    assert_stopped(*server_of(result.stdout))


def test_a_failing_step_still_stops_the_server(one_version_repository, tmp_path):
    command = demo_command(one_version_repository, tmp_path / "out", "--steps", "0")
    result = subprocess.run(command, capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    assert result.returncode == 1
    assert "steps" in result.stderr and "demo: error: sd-client generate failed" in result.stderr
    assert_stopped(*server_of(result.stdout))


@pytest.mark.parametrize("sig,returncode", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)],
                         ids=["ctrl-c", "sigterm"])
def test_an_interrupted_demo_stops_the_server(one_version_repository, tmp_path, sig, returncode):
    command = demo_command(one_version_repository, tmp_path / "out")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        while not SERVER_LINE.search(seen):  # the server is loading now
            line = process.stdout.readline()
            assert line, seen
            seen += line
        pid, rest_port = server_of(seen)
        process.send_signal(sig)  # to the demo alone: it must stop the server itself
        rest = process.communicate(timeout=DEMO_TIMEOUT)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == returncode, seen + rest
    assert f"sd-model-server pid {pid} stopped" in rest
    assert_stopped(pid, rest_port)


# ---- the export step, with sd-export stood in for


def export_args(tmp_path, random_weights=False, clip_vocab="vocab.txt.gz"):
    return SimpleNamespace(models_dir=tmp_path / "models", height=256, width=256, clip_vocab=clip_vocab,
                           random_weights=random_weights)  # fmt: skip


class FakeExport:
    """Answers each sd-export command with the next (returncode, stderr) and records the commands."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.commands = []

    def __call__(self, command):
        self.commands.append(command)
        return self.answers.pop(0)


OFFLINE = "sd-export: error: could not download KerasCV's SD v1.4 weights (URL fetch failure); pass local .h5 files"


def test_stock_weights_are_tried_first(tmp_path):
    export = FakeExport((0, ""))
    demo.export_if_needed(export_args(tmp_path), runner=export)
    (command,) = export.commands
    assert command[0].endswith("sd-export") and "--random-weights" not in command
    for flag, value in (("--models-dir", str(tmp_path / "models")), ("--height", "256"), ("--width", "256"),
                        ("--clip-vocab", "vocab.txt.gz")):  # fmt: skip
        assert command[command.index(flag) + 1] == value


def test_a_failed_download_falls_back_to_random_weights_loudly(tmp_path, capsys):
    export = FakeExport((1, OFFLINE), (0, ""))
    demo.export_if_needed(export_args(tmp_path), runner=export)
    assert ["--random-weights" in command for command in export.commands] == [False, True]
    assert demo.RANDOM_WEIGHTS_BANNER in capsys.readouterr().err


def test_other_export_errors_stop_the_demo_without_random_weights(tmp_path):
    export = FakeExport((1, "sd-export: error: height 100 is not supported"))
    with pytest.raises(demo.DemoError, match="sd-export failed"):
        demo.export_if_needed(export_args(tmp_path), runner=export)
    assert len(export.commands) == 1


def test_random_weights_asked_for_skip_the_download(tmp_path):
    export = FakeExport((0, ""))
    demo.export_if_needed(export_args(tmp_path, random_weights=True, clip_vocab=None), runner=export)
    (command,) = export.commands
    assert "--random-weights" in command and "--clip-vocab" not in command


def test_an_existing_export_is_not_exported_again(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "models.config").write_text("")
    export = FakeExport()
    demo.export_if_needed(export_args(tmp_path), runner=export)
    assert export.commands == []


def test_the_fallback_matches_sd_exports_download_error(monkeypatch):
    """The text the demo looks for is what sd-export says when KerasCV's weight download fails."""
    import keras_cv.models.stable_diffusion as stable_diffusion
    from sd_export.weights import WeightSources, WeightsError, build_components

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://huggingface.co/...: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(stable_diffusion, "TextEncoder", offline)
    with pytest.raises(WeightsError) as caught:
        build_components(128, 128, WeightSources())
    assert demo.WEIGHTS_DOWNLOAD_FAILED in f"sd-export: error: {caught.value}"


def test_random_weight_exports_are_recognised(standin_repository, tmp_path):
    assert not demo.random_weights_in(standin_repository)
    info = tmp_path / "diffusion_model" / "1" / "assets.extra" / "sd_export.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"random_weights": True, "model": "diffusion_model"}))
    assert demo.random_weights_in(tmp_path)
