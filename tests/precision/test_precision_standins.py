"""Every precision on the stand-in models (the real exporter, tiny models): the option, what each version records,
the float32 contract at the edges, and half-precision exports served as they are, over REST, gRPC and in-process.

This CPU runs float16 kernels (oneDNN converts them), so float16 is served here like bfloat16.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import standins
import tensorflow as tf
from server_process import running_server
from tf1 import Tf1Model

from sd_client import Client
from sd_export import contract
from sd_export.export import export_repository

SIZE = 128
PRECISIONS = {1: "float32", 2: "bfloat16", 3: "float16"}  # version -> precision


@pytest.fixture(scope="module")
def repository(tmp_path_factory, clip_vocab_path):
    models_dir = tmp_path_factory.mktemp("precisions") / "models"
    for version, precision in PRECISIONS.items():
        components = standins.components(SIZE, SIZE, precision=precision)
        export_repository(
            components, models_dir, SIZE, SIZE, version=version, label=precision, clip_vocab=clip_vocab_path,
            precision=precision,
        )  # fmt: skip
    return models_dir


@pytest.mark.parametrize("version, precision", PRECISIONS.items())
def test_each_version_records_and_stores_its_precision(repository, version, precision):
    for model in (*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE):
        version_dir = repository / model / str(version)
        assert json.loads((version_dir / "assets.extra" / "sd_export.json").read_text())["precision"] == precision
        stored = tf.train.load_checkpoint(str(version_dir / "variables" / "variables")).get_variable_to_dtype_map()
        assert {dtype.name for dtype in stored.values()} - {"string"} == {precision}, model


@pytest.mark.parametrize("version", [2, 3])
def test_half_precision_keeps_the_float32_contract_and_runs_under_the_session_loader(repository, version):
    served = {model: Tf1Model(repository / model / str(version)) for model in contract.SPLIT_MODELS}
    try:
        for model, signatures in contract.SIGNATURES.items():
            if model in served:
                for name, spec in signatures.items():
                    signature = served[model].signature(name)
                    for side in ("inputs", "outputs"):
                        dtypes = {k: tf.dtypes.as_dtype(v.dtype).name for k, v in getattr(signature, side).items()}
                        assert dtypes == {k: dtype for k, (dtype, _) in spec[side].items()}
        context = np.random.default_rng(0).standard_normal((2, 77, 768)).astype(np.float32)
        inputs = {"context": context, "unconditional_context": context, "num_steps": np.int32(2),
                  "guidance_scale": np.float32(7.5), "seed": np.array([1, 2], np.int32)}  # fmt: skip
        latent = served["diffusion_model"].run("serving_default", inputs)["latent"]
        assert latent.dtype == np.float32 and np.isfinite(latent).all()
        images = served["decoder"].run("serving_default", {"latent": latent})["images"]
        assert images.dtype == np.uint8 and images.shape == (2, SIZE, SIZE, 3)
    finally:
        for model in served.values():
            model.close()


def test_half_precision_exports_are_served_as_they_are(repository, clip_vocab_path):
    with running_server(repository / "models.config") as (rest_url, grpc_target):
        clients = [Client(rest_url, vocab_path=clip_vocab_path), Client(f"grpc://{grpc_target}", vocab_path=clip_vocab_path)]
        clients.append(Client(repository / "models.config", vocab_path=clip_vocab_path))
        try:
            for label in ("bfloat16", "float16"):
                images = [client.generate("a cat", num_steps=2, seed=3, label=label)[0].array for client in clients]
                for image in images[1:]:
                    assert np.abs(image.astype(int) - images[0].astype(int)).max() <= 1, label
        finally:
            for client in clients:
                client.close()


def test_a_precision_that_does_not_match_the_components_is_refused(tmp_path):
    components = standins.components(SIZE, SIZE, precision="bfloat16")
    with pytest.raises(ValueError, match="precision float16 was asked for, but the components are bfloat16"):
        export_repository(components, tmp_path / "models", SIZE, SIZE, precision="float16")
    with pytest.raises(ValueError, match="precision 'int8' is not supported: use one of float32, bfloat16, float16"):
        export_repository(components, tmp_path / "models", SIZE, SIZE, precision="int8")
    assert not (tmp_path / "models").exists()


def test_the_cli_refuses_an_unknown_precision_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sd_export.cli", "--random-weights", "--precision", "float64", "--models-dir", tmp_path],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "argument --precision: invalid choice: 'float64' (choose from 'float32', 'bfloat16', 'float16')" in result.stderr


def test_the_server_caches_weights_by_default_for_one_half_precision_version(repository, clip_vocab_path, tmp_path):
    """oneDNN's weight cache is on by default only where it fits (sd_serving.weight_cache); here one bfloat16 version."""
    entries = "".join(
        f'config {{ name: "{model}" base_path: "{repository / model}" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 2 } } }\n"
        for model in contract.SPLIT_MODELS
    )
    config = tmp_path / "bfloat16.config"
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    with running_server(config, environment={"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": None}) as server:
        assert "unset: every served version is a half-precision export" in server.log()
        assert "so oneDNN caches weights" in server.log()
        with Client(f"grpc://{server.grpc_target}", vocab_path=clip_vocab_path) as client:
            (result,) = client.generate("a cat", num_steps=2, seed=3)
            with Client(repository / "models.config", vocab_path=clip_vocab_path) as in_process:
                (expected,) = in_process.generate("a cat", num_steps=2, seed=3, label="bfloat16")
    assert np.abs(result.array.astype(int) - expected.array.astype(int)).max() <= 1
