"""Each version records how it was made: in assets.extra/sd_export.json of every model, and in a `provenance`
signature on diffusion_model and text_to_image that clients reach through the server (run here as TF Serving runs
it: TF1 session loader, signature tensor names)."""

import json

import numpy as np
import pytest
import standins
import tensorflow as tf
from tf1 import Tf1Model

from sd_export import contract

PROVENANCE_MODELS = (contract.DIFFUSION_MODEL, contract.TEXT_TO_IMAGE)


@pytest.fixture(scope="module")
def provenance_models(standin_repository):
    models = {(name, v): Tf1Model(standin_repository / name / str(v)) for name in PROVENANCE_MODELS for v in (1, 2)}
    yield models
    for model in models.values():
        model.close()


def keys(*names):
    return np.array([name.encode() for name in names], dtype=object)


@pytest.mark.parametrize("model", PROVENANCE_MODELS)
@pytest.mark.parametrize("version", [1, 2])
def test_the_signature_answers_each_key_with_this_versions_value(provenance_models, model, version):
    asked = list(reversed(contract.PROVENANCE_KEYS)) + [contract.PROVENANCE_KEYS[0]]  # any order, repeats allowed
    value = provenance_models[(model, version)].run(contract.PROVENANCE_SIGNATURE, {"key": keys(*asked)})["value"]
    assert [v.decode() for v in value] == [standins.PROVENANCE[version][key] for key in asked]


def test_an_unknown_key_is_invalid_argument_naming_the_known_ones(provenance_models):
    model = provenance_models[(contract.DIFFUSION_MODEL, 1)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="key must be one of precision, source_format"):
        model.run(contract.PROVENANCE_SIGNATURE, {"key": keys("precision", "weights")})
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        model.run(contract.PROVENANCE_SIGNATURE, {"key": keys()})


def test_batched_models_have_no_provenance_signature_but_every_model_has_the_record(standin_repository):
    for name in contract.SPLIT_MODELS + (contract.TEXT_TO_IMAGE,):
        info = json.loads((standin_repository / name / "2" / "assets.extra" / "sd_export.json").read_text())
        assert {key: info[key] for key in contract.PROVENANCE_KEYS} == standins.PROVENANCE[2]
        assert info["model"] == name and info["version"] == 2
        has_signature = contract.PROVENANCE_SIGNATURE in contract.SIGNATURES[name]
        assert has_signature == (name in PROVENANCE_MODELS)


def test_the_cli_records_the_checkpoints_format_and_sha256(keras_cv_repository, sd14_checkpoint):
    """sd-export --ckpt sd14.safetensors: the U-Net checkpoint's format and sha256 are the version's source (the SD
    UIs' "Model hash"); the parts taken from other files are recorded beside it."""
    import subprocess

    expected = subprocess.run(["sha256sum", sd14_checkpoint["ldm"]], capture_output=True, text=True, check=True)
    expected = expected.stdout.split()[0]
    for name in contract.SPLIT_MODELS + (contract.TEXT_TO_IMAGE,):
        info = json.loads((keras_cv_repository / name / "1" / "assets.extra" / "sd_export.json").read_text())
        assert info["source_format"] == "ldm_safetensors" and info["source_sha256"] == expected
        assert info["source_text_encoder_format"] == "keras_h5" and info["source_decoder_format"] == "diffusers"
        assert info["precision"] == "float32"  # the provenance signature answers these (tested on the stand-ins)


def test_the_stock_weights_hash_is_the_one_keras_cv_checks(tmp_path):
    import inspect

    from keras_cv.models.stable_diffusion import DiffusionModel

    from sd_export.weights import KERAS_CV_DIFFUSION_MODEL_SHA256, WeightSources

    assert f'file_hash="{KERAS_CV_DIFFUSION_MODEL_SHA256}"' in inspect.getsource(DiffusionModel.__init__)
    assert WeightSources().source() == {"format": "keras_cv_download", "sha256": KERAS_CV_DIFFUSION_MODEL_SHA256}
    assert WeightSources(random=True).source() == {"format": "random"}
