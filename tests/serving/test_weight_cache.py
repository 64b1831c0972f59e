"""The server's default for oneDNN's weight cache: on only for what fits a 16 GB machine; the user's setting wins."""

import json

import pytest

from sd_serving.weight_cache import MAX_CACHED_VARIABLE_BYTES, VARIABLE, cache_fits, check_setting, weight_caching


def version(folder, precision, variables_bytes):
    """A version folder as sd-export leaves it (provenance record, variables/), with a sparse variables file."""
    (folder / "variables").mkdir(parents=True)
    with open(folder / "variables" / "variables.data-00000-of-00001", "wb") as handle:
        handle.truncate(int(variables_bytes))  # sparse: the size without the disk
    if precision is not None:
        (folder / "assets.extra").mkdir()
        (folder / "assets.extra" / "sd_export.json").write_text(json.dumps({"precision": precision, "version": 1}))
    return folder


def test_one_half_precision_version_gets_the_cache(tmp_path):
    models = [version(tmp_path / name / "1", "bfloat16", size) for name, size in
              [("text_encoder", 0.25e9), ("diffusion_model", 1.72e9), ("decoder", 0.1e9)]]  # fmt: skip
    value, line = weight_caching(models, {})
    assert value == "1"
    assert "every served version is a half-precision export (2.07 GB of variables), so oneDNN caches weights" in line
    assert weight_caching([version(tmp_path / "f16", "float16", 1e9)], {})[0] == "1"


@pytest.mark.parametrize(
    "versions,reason",
    [
        ([("bfloat16", 1.7e9), ("float32", 0.5e9)], "is not a half-precision export"),
        ([("bfloat16", 1.7e9), (None, 0.1e9)], "is not a half-precision export"),  # no record: assume full width
        ([("bfloat16", 2.06e9), ("bfloat16", 2.06e9)], "total 4.12 GB, more than one version's"),
    ],
)
def test_what_would_not_fit_keeps_the_reordering(tmp_path, versions, reason):
    folders = [version(tmp_path / str(i), precision, size) for i, (precision, size) in enumerate(versions)]
    value, line = weight_caching(folders, {})
    assert value is None
    assert reason in line and "so oneDNN reorders weights on every call (=1 caches them" in line
    assert not cache_fits(folders)[0]


def test_the_limit_is_one_version_of_the_three_models():
    assert 2.06e9 < MAX_CACHED_VARIABLE_BYTES < 2 * 2.06e9  # measured: a bfloat16 version stores 2.06 GB


@pytest.mark.parametrize(
    "value,described",
    [
        ("1", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1: oneDNN caches weights"),
        ("True", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=True: oneDNN caches weights"),
        ("0", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0: oneDNN reorders weights on every call"),
        ("false", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=false: oneDNN reorders weights on every call"),
    ],
)
def test_the_users_setting_wins_and_is_logged(tmp_path, value, described):
    half = [version(tmp_path / "1", "bfloat16", 2e9)]
    environ = {VARIABLE: value}
    check_setting(environ)
    assert weight_caching(half, environ) == (None, described)  # None: the environment is left as the user set it
    assert environ == {VARIABLE: value}


@pytest.mark.parametrize("value", ["yes", "", " 1", "2"])
def test_values_tensorflow_would_abort_on_are_refused(value):
    with pytest.raises(ValueError, match=f"{VARIABLE}={value!r}: expected 0, 1, false or true"):
        check_setting({VARIABLE: value})

