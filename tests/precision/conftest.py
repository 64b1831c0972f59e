"""Half-precision exports of KerasCV's real architectures (random weights, 128x128), bfloat16 and float16, and KerasCV's
own images of the same weights under the matching mixed policy, shared by the precision tests.

Both start from the float32 session fixtures' weight files (tests/conftest.py). KerasCV's mixed-precision models
are a second U-Net, so they are built in a subprocess (keras_cv_mixed.py), never in the pytest process.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from chains import GUIDANCE, PROMPT, SEED, SIZE, STEPS
from disk_space import require_free_space
from tf1 import served_version

HERE = Path(__file__).resolve().parent


class Started:
    """A subprocess started now, with its stderr kept in a file whose tail a failure shows."""

    def __init__(self, command, log):
        self.log = log
        with open(log, "w") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)

    def wait(self):
        assert self.process.wait() == 0, self.log.read_text()[-3000:]

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def sd_export(weight_files, models_dir, clip_vocab, precision):
    command = [
        sys.executable, "-m", "sd_export.cli",
        "--ckpt", str(weight_files["diffusion_model"]),
        "--text-encoder", str(weight_files["text_encoder"]),
        "--decoder", str(weight_files["decoder"]),
        "--height", str(SIZE), "--width", str(SIZE), "--models-dir", str(models_dir), "--clip-vocab", str(clip_vocab),
        "--precision", precision,
    ]  # fmt: skip
    return Started(command, models_dir.parent / "sd-export.log")


def keras_cv_mixed(policy, weight_files, clip_vocab, out):
    weights = json.dumps({name: str(path) for name, path in weight_files.items()})
    command = [
        sys.executable, str(HERE / "keras_cv_mixed.py"), "--policy", policy, "--weights", weights,
        "--vocab", str(clip_vocab), "--size", str(SIZE), "--steps", str(STEPS), "--guidance", str(GUIDANCE),
        "--prompt", PROMPT, "--seed", str(SEED), "--out", str(out),
    ]  # fmt: skip
    return Started(command, out.with_suffix(".log"))


# Any x86-64 CPU runs both (faster with AMX-BF16 or AVX512-BF16, AVX512-FP16); tests are grouped by precision, so
# one half export is loaded at a time.
HALF_PRECISIONS = ("bfloat16", "float16")


@pytest.fixture(scope="package", params=HALF_PRECISIONS)
def precision(request):
    return request.param


@pytest.fixture(scope="session")
def half_runs(keras_cv_weight_files, tmp_path_factory, clip_vocab_path):
    """For each half precision, `sd-export --precision` from the float32 fixtures' .h5 files and KerasCV's
    text_to_image under the matching mixed policy on the same files, side by side: each spends most of its time on
    one core (building layers, tracing, saving), so on two cores the pair takes about as long as the longer one. A pair
    holds about 12 GB, so one precision at a time, and all before the first test loads a half export (after that, this
    process holds about 4 GB more). {precision: folder with models/ and keras_cv.npz}."""
    folders = {}
    for precision in HALF_PRECISIONS:
        folder = tmp_path_factory.mktemp(precision)
        require_free_space(folder, 4, f"The {precision} export of the real architectures")
        runs = [
            sd_export(keras_cv_weight_files, folder / "models", clip_vocab_path, precision),
            keras_cv_mixed(f"mixed_{precision}", keras_cv_weight_files, clip_vocab_path, folder / "keras_cv.npz"),
        ]
        try:
            for run in runs:
                run.wait()
        finally:
            for run in runs:
                run.stop()
        folders[precision] = folder
    return folders


@pytest.fixture(scope="package")
def half_repository(half_runs, precision):
    """models/ written by `sd-export --precision <precision>`."""
    return half_runs[precision] / "models"


@pytest.fixture(scope="package")
def half_served(half_repository):
    yield from served_version(half_repository)


@pytest.fixture(scope="package")
def keras_cv_half_images(half_runs, precision):
    """KerasCV's text_to_image under mixed_<precision> for a batch of 1 and of 2: {"batch_1": [1,H,W,3], "batch_2":
    ...}."""
    return dict(np.load(half_runs[precision] / "keras_cv.npz"))
