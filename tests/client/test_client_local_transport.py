"""The in-process transport: model folder and models.config reading, TF Serving's version rules, running a small
TF1 SavedModel by its signature, errors, and the message when TensorFlow is missing."""

import sys

import numpy as np
import pytest

from sd_client import Client, cli
from sd_client.errors import FailedPrecondition, InvalidArgument, MissingTensorFlow, NotFound
from sd_client.transports import local
from sd_client.transports.local import read_repository

_CONFIG = """
model_config_list {
  config {
    name: 'diffusion_model'
    base_path: '/models/diffusion_model'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: 'stock' value: 1 }
    version_labels { key: 'pokemon' value: 3 }
  }
  config {
    name: 'decoder'
    base_path: 'decoder'
    model_platform: 'tensorflow'
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: 'text_encoder'
    base_path: '/models/text_encoder'
    model_platform: 'tensorflow'
    some_future_field: 1
  }
}
"""


def _fake_versions(models, model, versions, complete=True):
    for version in versions:
        folder = models / model / str(version)
        folder.mkdir(parents=True)
        if complete:
            (folder / "saved_model.pb").write_bytes(b"")


def test_models_config_policies_labels_and_container_paths(tmp_path):
    _fake_versions(tmp_path, "diffusion_model", [1, 2, 3])
    _fake_versions(tmp_path, "decoder", [1, 2, 5])
    _fake_versions(tmp_path, "decoder", [9], complete=False)  # half-written: no saved_model.pb
    _fake_versions(tmp_path, "text_encoder", [1, 4])
    (tmp_path / "models.config").write_text(_CONFIG)
    repository = read_repository(tmp_path)
    assert sorted(repository["diffusion_model"].versions) == [1, 3]  # specific
    assert repository["diffusion_model"].labels == {"stock": 1, "pokemon": 3}
    assert repository["diffusion_model"].versions[3] == tmp_path / "diffusion_model" / "3"  # /models/ -> folder
    assert sorted(repository["decoder"].versions) == [2, 5]  # latest 2, the unfinished 9 ignored
    assert sorted(repository["text_encoder"].versions) == [4]  # no policy: latest 1


def _config(*models, versions=(1,), labels=None):
    entries = "".join(
        f"config {{ name: '{model}' base_path: '/models/{model}' model_platform: 'tensorflow' "
        f"model_version_policy {{ specific {{ {' '.join(f'versions: {v}' for v in versions)} }} }} "
        + "".join(f"version_labels {{ key: '{k}' value: {v} }} " for k, v in (labels or {}).items())
        + "} "
        for model in models
    )
    return f"model_config_list {{ {entries}}}"


def test_a_folder_serves_both_configs_a_config_file_only_its_own(tmp_path):
    for model in ("text_encoder", "diffusion_model", "decoder"):
        _fake_versions(tmp_path, model, [1, 2])
    _fake_versions(tmp_path, "text_to_image", [1])
    (tmp_path / "models.config").write_text(
        _config("text_encoder", "diffusion_model", "decoder", versions=(1, 2), labels={"stock": 1, "tuned": 2})
    )
    # a model listed in both files keeps models.config's entry (read first)
    (tmp_path / "text_to_image.config").write_text(_config("text_to_image", "decoder", labels={"stock": 1}))
    folder = read_repository(tmp_path)
    assert sorted(folder) == ["decoder", "diffusion_model", "text_encoder", "text_to_image"]
    assert sorted(folder["decoder"].versions) == [1, 2] and folder["decoder"].labels == {"stock": 1, "tuned": 2}
    assert folder["text_to_image"].versions == {1: tmp_path / "text_to_image" / "1"}
    assert folder["text_to_image"].labels == {"stock": 1}
    assert sorted(read_repository(tmp_path / "text_to_image.config")) == ["decoder", "text_to_image"]
    assert sorted(read_repository(tmp_path / "models.config")) == ["decoder", "diffusion_model", "text_encoder"]


def test_a_config_file_resolves_base_paths_against_its_own_folder(tmp_path):
    _fake_versions(tmp_path / "elsewhere", "text_to_image", [3])
    (tmp_path / "elsewhere" / "text_to_image.config").write_text(_config("text_to_image", versions=(3,)))
    repository = read_repository(tmp_path / "elsewhere" / "text_to_image.config")
    assert repository["text_to_image"].versions == {3: tmp_path / "elsewhere" / "text_to_image" / "3"}
    (tmp_path / "notes.txt").write_text("not a config")
    with pytest.raises(FailedPrecondition, match="notes.txt is not a valid model server config"):
        read_repository(tmp_path / "notes.txt")


def test_without_config_each_model_serves_its_highest_version(tmp_path):
    _fake_versions(tmp_path, "decoder", [1, 2, 10])
    (tmp_path / "decoder" / "notes").mkdir()
    (tmp_path / "empty").mkdir()
    repository = read_repository(tmp_path)
    assert list(repository) == ["decoder"] and list(repository["decoder"].versions) == [10]


def test_a_broken_config_is_named(tmp_path):
    (tmp_path / "models.config").write_text("model_config_list { config { name: ")
    with pytest.raises(FailedPrecondition, match="models.config is not a valid model server config"):
        read_repository(tmp_path)


def test_a_missing_model_folder_says_what_to_do(tmp_path):
    pytest.importorskip("tensorflow")
    with pytest.raises(NotFound, match="does not exist: export models first"):
        Client(models_dir=tmp_path / "nothing")


@pytest.fixture
def without_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now raises ImportError


def test_without_tensorflow_the_error_says_pass_a_url_or_install_the_extra(tmp_path, without_tensorflow):
    with pytest.raises(MissingTensorFlow) as caught:
        Client(models_dir=tmp_path)
    assert "--url" in str(caught.value) and 'pip install "./client[local]"' in str(caught.value)
    assert isinstance(caught.value, ImportError)


def test_without_tensorflow_the_cli_prints_one_line(tmp_path, without_tensorflow, capsys, monkeypatch):
    monkeypatch.delenv(cli.URL_ENV, raising=False)
    assert cli.main(["generate", "x", "--models-dir", str(tmp_path), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "client[local]" in err[0]


@pytest.fixture(scope="module")
def tiny_repository(tmp_path_factory):
    """A model folder with a small TF1 SavedModel per version: `png` turns a [B,2,2,4] latent into B PNGs,
    `serving_default` checks a scalar num_steps in the graph and scales the latent by the version number."""
    tf = pytest.importorskip("tensorflow")
    models = tmp_path_factory.mktemp("models")
    for version in (1, 2):
        graph = tf.Graph()
        with graph.as_default():
            latent = tf.compat.v1.placeholder(tf.float32, [None, 2, 2, 4], name="latent")
            num_steps = tf.compat.v1.placeholder(tf.int32, [], name="num_steps")
            check = tf.debugging.assert_less_equal(num_steps, 1000, message="num_steps must be in [1, 1000]")
            with tf.control_dependencies([check]):
                scaled = tf.identity(latent * float(version), name="scaled")
            pixels = tf.cast(tf.clip_by_value(latent[..., :3] * 255.0, 0, 255), tf.uint8)
            pngs = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)
            info = tf.compat.v1.saved_model.utils.build_tensor_info
            signatures = {
                "png": tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                    {"latent": latent}, {"images_bytes": pngs}
                ),
                "serving_default": tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                    {"latent": info(latent), "num_steps": info(num_steps)}, {"latent": info(scaled)},
                    "tensorflow/serving/predict",
                ),
            }
            with tf.compat.v1.Session(graph=graph) as session:
                builder = tf.compat.v1.saved_model.Builder(str(models / "decoder" / str(version)))
                builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
                builder.save()
    (models / "models.config").write_text(
        "model_config_list { config { name: 'decoder' base_path: '/models/decoder' model_platform: 'tensorflow' "
        "model_version_policy { all {} } version_labels { key: 'stock' value: 1 } } }"
    )
    return models


@pytest.fixture(scope="module")
def tiny(tiny_repository):
    transport = local.LocalTransport(tiny_repository)
    yield transport
    transport.close()


def test_runs_a_signature_by_its_tensor_names(tiny):
    latent = np.random.default_rng(0).uniform(size=(3, 2, 2, 4)).astype(np.float32)
    outputs = tiny.predict("decoder", "png", {"latent": latent})
    assert outputs["images_bytes"].shape == (3,) and outputs["images_bytes"].dtype == object
    assert all(isinstance(b, bytes) and b.startswith(b"\x89PNG") for b in outputs["images_bytes"])
    scaled = tiny.predict("decoder", "serving_default", {"latent": latent, "num_steps": np.int32(5)}, version=1)
    np.testing.assert_array_equal(scaled["latent"], latent)


def test_versions_and_labels(tiny):
    latent = np.ones((1, 2, 2, 4), np.float32)
    run = {"latent": latent, "num_steps": np.int32(5)}
    assert tiny.predict("decoder", "serving_default", run)["latent"].max() == 2  # no version: the highest
    assert tiny.predict("decoder", "serving_default", run, label="stock")["latent"].max() == 1
    assert tiny.predict("decoder", "serving_default", run, version=2)["latent"].max() == 2
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: nope"):
        tiny.predict("decoder", "png", {"latent": latent}, label="nope")
    with pytest.raises(NotFound, match="Could not find version 7"):
        tiny.predict("decoder", "png", {"latent": latent}, version=7)
    with pytest.raises(NotFound, match="text_encoder"):
        tiny.predict("text_encoder", "serving_default", {})
    assert [(s.version, s.state) for s in tiny.model_status("decoder")] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert [s.version for s in tiny.model_status("decoder", label="stock")] == [1]


def test_signatures(tiny):
    signatures = tiny.signatures("decoder")
    assert signatures["png"]["inputs"] == {"latent": ("float32", (None, 2, 2, 4))}
    assert signatures["png"]["outputs"]["images_bytes"][0] == "string"
    assert signatures["serving_default"]["inputs"]["num_steps"] == ("int32", ())


def test_bad_requests_are_invalid_argument(tiny):
    latent = np.ones((1, 2, 2, 4), np.float32)
    with pytest.raises(InvalidArgument, match="num_steps must be in"):  # the graph's own check, by its error code
        tiny.predict("decoder", "serving_default", {"latent": latent, "num_steps": np.int32(5000)})
    with pytest.raises(InvalidArgument, match=r"missing \['num_steps'\]"):
        tiny.predict("decoder", "serving_default", {"latent": latent})
    with pytest.raises(InvalidArgument, match=r"unknown \['extra'\]"):
        tiny.predict("decoder", "png", {"latent": latent, "extra": latent})
    with pytest.raises(InvalidArgument, match="nope"):
        tiny.predict("decoder", "nope", {"latent": latent})
    with pytest.raises(InvalidArgument):
        tiny.predict("decoder", "png", {"latent": np.ones((1, 3, 2, 4), np.float32)})


def test_a_folder_that_is_not_a_saved_model_is_named(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "decoder" / "1").mkdir(parents=True)
    (tmp_path / "decoder" / "1" / "saved_model.pb").write_bytes(b"not a saved model")
    transport = local.LocalTransport(tmp_path)
    with pytest.raises(FailedPrecondition, match="cannot load the SavedModel .*decoder/1"):
        transport.predict("decoder", "png", {})
