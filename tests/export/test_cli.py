"""sd-export on bad weights, resolutions and versions: a one-line error naming what was wrong, a non-zero exit, and
the model repository untouched."""

import shutil
import subprocess
import sys

import pytest

SIZE = "128"


def sd_export(*args):
    return subprocess.run([sys.executable, "-m", "sd_export.cli", *map(str, args)], capture_output=True, text=True)


def error_line(result):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("sd-export: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.fixture
def models_dir(standin_repository, tmp_path):
    """A copy of a populated repository, to prove a failing export leaves it exactly as it was."""
    copy = tmp_path / "models"
    shutil.copytree(standin_repository, copy)
    return copy


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def bad_file(tmp_path, kind, keras_cv_weight_files=None):
    if kind == "missing":
        return tmp_path / "nope.h5"
    if kind == "not_hdf5":
        path = tmp_path / "notes.h5"
        path.write_text("these are not weights\n")
        return path
    if kind == "pickle":
        path = tmp_path / "model.ckpt"
        path.write_bytes(b"\x80\x04\x95")  # a pickle header: never opened
        return path
    raise ValueError(kind)


@pytest.mark.parametrize("kind, expected", [
    ("missing", "no such file"),
    ("not_hdf5", "neither HDF5, safetensors nor a folder"),
    ("pickle", "a pickle-based PyTorch file; it is never unpickled"),
])  # fmt: skip
@pytest.mark.parametrize("flag", ["--ckpt", "--text-encoder", "--decoder"])
def test_unusable_weight_files(tmp_path, models_dir, flag, kind, expected):
    before = tree(models_dir)
    path = bad_file(tmp_path, kind)
    line = error_line(sd_export(flag, path, "--height", SIZE, "--width", SIZE, "--models-dir", models_dir))
    assert str(path) in line and expected in line
    assert tree(models_dir) == before


def test_truncated_weights_file(tmp_path, models_dir, keras_cv_weight_files):
    truncated = tmp_path / "truncated.h5"
    data = keras_cv_weight_files["text_encoder"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    before = tree(models_dir)
    line = error_line(sd_export("--text-encoder", truncated, "--models-dir", models_dir, "--height", SIZE, "--width", SIZE))
    assert str(truncated) in line and "unreadable HDF5" in line
    assert tree(models_dir) == before


def test_weights_of_the_wrong_shapes(models_dir, keras_cv_weight_files):
    """A VAE decoder file handed over as the U-Net checkpoint: refused after the models are built, nothing written."""
    before = tree(models_dir)
    result = sd_export(
        "--no-text-to-image",
        "--ckpt", keras_cv_weight_files["decoder"],
        "--text-encoder", keras_cv_weight_files["text_encoder"],
        "--decoder", keras_cv_weight_files["decoder"],
        "--height", SIZE, "--width", SIZE, "--models-dir", models_dir,
    )  # fmt: skip
    line = error_line(result)
    assert str(keras_cv_weight_files["decoder"]) in line and "does not fit KerasCV's SD v1.4 diffusion_model" in line
    assert tree(models_dir) == before


@pytest.mark.parametrize("height, width", [(160, 512), (512, 100), (64, 64), (512, 520)])
def test_unsupported_resolutions(models_dir, height, width):
    line = error_line(sd_export("--random-weights", "--height", height, "--width", width, "--models-dir", models_dir))
    assert "multiple of 64 from 128 up" in line


def test_existing_version_is_refused_before_any_work(models_dir):
    before = tree(models_dir)
    line = error_line(sd_export("--random-weights", "--version", 2, "--models-dir", models_dir))
    assert "version 2 already exists" in line
    assert tree(models_dir) == before


def test_random_weights_and_a_file_exclude_each_other(models_dir, keras_cv_weight_files):
    line = error_line(sd_export("--random-weights", "--ckpt", keras_cv_weight_files["diffusion_model"], "--models-dir", models_dir))
    assert "exclude each other" in line


def test_offline_default_weights_say_what_to_do(tmp_path, clip_vocab_path):
    result = sd_export(
        "--height", SIZE, "--width", SIZE, "--models-dir", tmp_path / "models", "--clip-vocab", clip_vocab_path
    )  # fmt: skip
    line = error_line(result)
    assert "--random-weights" in line and "CKPT" in line
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_missing_clip_vocabulary_file(tmp_path):
    line = error_line(sd_export("--random-weights", "--clip-vocab", tmp_path / "nope.txt.gz", "--models-dir", tmp_path))
    assert str(tmp_path / "nope.txt.gz") in line and "no such file" in line
