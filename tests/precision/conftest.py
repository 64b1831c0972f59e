"""Half-precision exports of KerasCV's real architectures (random weights, 128x128), bfloat16 and float16, and KerasCV's
own images of the same weights under the matching mixed policy, shared by the precision tests.

Both start from the float32 session fixtures' weight files (tests/conftest.py). KerasCV's mixed-precision models
are a second U-Net, so they are built in a subprocess (keras_cv_mixed.py), never in the pytest process.
"""

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from chains import GUIDANCE, PROMPT, SEED, SIZE, STEPS
from disk_space import require_free_space
from tf1 import served_version

HERE = Path(__file__).resolve().parent


def sd_export(weight_files, models_dir, clip_vocab, *flags):
    command = [
        sys.executable, "-m", "sd_export.cli",
        "--ckpt", str(weight_files["diffusion_model"]),
        "--text-encoder", str(weight_files["text_encoder"]),
        "--decoder", str(weight_files["decoder"]),
        "--height", str(SIZE), "--width", str(SIZE), "--models-dir", str(models_dir), "--clip-vocab", str(clip_vocab),
        *flags,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return models_dir


# Any x86-64 CPU runs both (faster with AMX-BF16 or AVX512-BF16, AVX512-FP16); tests are grouped by precision, so
# one half export is alive at a time.
HALF_PRECISIONS = ("bfloat16", "float16")


@pytest.fixture(scope="package", params=HALF_PRECISIONS)
def precision(request):
    return request.param


@pytest.fixture(scope="package")
def half_repository(precision, keras_cv_weight_files, tmp_path_factory, clip_vocab_path):
    """models/ written by `sd-export --precision <precision>` from the float32 fixtures' .h5 files."""
    models_dir = tmp_path_factory.mktemp(precision) / "models"
    require_free_space(models_dir.parent, 4, f"The {precision} export of the real architectures")
    return sd_export(keras_cv_weight_files, models_dir, clip_vocab_path, "--precision", precision)


@pytest.fixture(scope="package")
def half_served(half_repository):
    yield from served_version(half_repository)


@pytest.fixture(scope="package")
def keras_cv_half_images(precision, keras_cv_weight_files, tmp_path_factory, clip_vocab_path):
    """KerasCV's text_to_image under mixed_<precision> for a batch of 1 and of 2: {"batch_1": [1,H,W,3], "batch_2":
    ...}, plus the subprocess's peak resident memory in bytes ("peak_bytes")."""
    out = tmp_path_factory.mktemp(f"keras_cv_{precision}") / "images.npz"
    weights = json.dumps({name: str(path) for name, path in keras_cv_weight_files.items()})
    command = [
        sys.executable, str(HERE / "keras_cv_mixed.py"), "--policy", f"mixed_{precision}", "--weights", weights,
        "--vocab", str(clip_vocab_path), "--size", str(SIZE), "--steps", str(STEPS), "--guidance", str(GUIDANCE),
        "--prompt", PROMPT, "--seed", str(SEED), "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    images = dict(np.load(out))
    images["peak_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child so far
    return images
