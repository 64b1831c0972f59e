"""The model repository: consistent versions, labels in models.config, warmup records, atomic writes."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import standins
import tensorflow as tf
from google.protobuf import text_format
from sd_export import contract, repository
from sd_export.export import export_repository
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2
from tf1 import Tf1Model

SIZE = 128
SPLIT = ("text_encoder", "diffusion_model", "decoder")


def read_config(models_dir):
    return text_format.Parse((models_dir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())


def snapshot(folder):
    """Every path under folder, and each file's size and modification time: 'untouched' means this is unchanged.

    (A folder's own mtime changes when an entry is added and removed again; TF Serving does not look at it.)"""
    return sorted(
        (str(p.relative_to(folder)),) + ((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else ())
        for p in folder.rglob("*")
    )


@pytest.fixture(scope="module")
def small_components():
    return standins.components(SIZE, SIZE)


def test_config_lists_every_version_and_label(standin_repository):
    config = read_config(standin_repository)
    entries = {entry.name: entry for entry in config.model_config_list.config}
    assert set(entries) == set(SPLIT)
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}"
        assert entry.model_platform == "tensorflow"
        assert list(entry.model_version_policy.specific.versions) == [1, 2]
        assert dict(entry.version_labels) == {"stock": 1, "tuned": 2}


def test_next_version_and_refusal_of_existing_ones(tmp_path, small_components):
    models_dir = tmp_path / "models"
    assert export_repository(small_components, models_dir, SIZE, SIZE)[0] == 1
    assert export_repository(small_components, models_dir, SIZE, SIZE, version=5)[0] == 5
    assert export_repository(small_components, models_dir, SIZE, SIZE)[0] == 6
    before = snapshot(models_dir)
    with pytest.raises(repository.RepositoryError, match="version 5 already exists"):
        export_repository(small_components, models_dir, SIZE, SIZE, version=5)
    assert snapshot(models_dir) == before
    for model in SPLIT:
        assert repository.versions_of(models_dir, model) == [1, 5, 6]


def test_label_moves_to_the_new_version(tmp_path, small_components):
    models_dir = tmp_path / "models"
    export_repository(small_components, models_dir, SIZE, SIZE, label="stable")
    export_repository(small_components, models_dir, SIZE, SIZE, label="canary")
    export_repository(small_components, models_dir, SIZE, SIZE, label="stable")
    for entry in read_config(models_dir).model_config_list.config:
        assert dict(entry.version_labels) == {"stable": 3, "canary": 2}


def test_labels_of_removed_versions_are_dropped(tmp_path, small_components):
    """Removing a version's folders and exporting again stops serving it: its label goes with it."""
    models_dir = tmp_path / "models"
    export_repository(small_components, models_dir, SIZE, SIZE, label="old")
    export_repository(small_components, models_dir, SIZE, SIZE, label="stable")
    for model in SPLIT:
        shutil.rmtree(models_dir / model / "1")
    export_repository(small_components, models_dir, SIZE, SIZE)
    for entry in read_config(models_dir).model_config_list.config:
        assert list(entry.model_version_policy.specific.versions) == [2, 3]
        assert dict(entry.version_labels) == {"stable": 2}


@pytest.mark.parametrize("label", ["has space", "dash-ed", "", "ünï"])
def test_bad_labels_are_refused(tmp_path, small_components, label):
    with pytest.raises(repository.RepositoryError, match="not valid"):
        export_repository(small_components, tmp_path / "models", SIZE, SIZE, label=label)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("model", SPLIT)
def test_warmup_records_parse_and_run(standin_repository, model):
    """One PredictionLog per signature, each a request the model (as TF Serving loads it) answers; of the signatures
    that call the U-Net, only with_sampler (with the weight cache each one run holds a copy of the U-Net's weights)."""
    path = standin_repository / model / "1" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    requests = [log.predict_log.request for log in logs]
    unet = {"serving_default", "from_noise", "with_sampler", "with_sampler_from_noise"}
    expected = [s for s in contract.SIGNATURES[model] if model != "diffusion_model" or s not in unet - {"with_sampler"}]
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(expected)
    served = Tf1Model(standin_repository / model / "1")
    try:
        for request in requests:
            assert request.model_spec.name == model
            spec = contract.SIGNATURES[model][request.model_spec.signature_name]
            assert set(request.inputs) == set(spec["inputs"])
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = served.run(request.model_spec.signature_name, inputs)
            assert set(outputs) == set(spec["outputs"])
    finally:
        served.close()


@pytest.mark.parametrize("model", (*SPLIT, "text_to_image"))
def test_every_saved_function_is_one_the_signatures_or_the_saver_call(standin_repository, model):
    """No second trace for TF2's object graph: TF Serving would load it and never run it (about 0.2 GB of a served
    128² version's peak). A copy shows up as a function nothing in the main graph reaches."""
    meta_graph, functions = library(standin_repository, model)
    reached = reached_functions(called_functions(meta_graph.graph_def.node, functions), functions)
    # TensorFlow's own for the tokenizer's hash tables: what its TF2 loader creates and destroys them with.
    table_functions = ("__inference__creator", "__inference__destroyer")
    table_resources = {name for name in functions if name.startswith(table_functions)}
    assert len(functions) > len(contract.SIGNATURES[model])
    assert sorted(set(functions) - reached - table_resources) == []


def test_decoder_decodes_one_image_at_a_time(standin_repository):
    """At 512² an image's decoder activations take about 1 GB in any precision (README, Sizing a server for batches):
    every convolution of the decoder must run inside a loop that runs one iteration at once, so that a batch holds one
    image's activations, not the batch's."""
    _, functions = library(standin_repository, "decoder")
    one_at_a_time = set()
    for function in functions.values():
        for node in function.node_def:
            if node.op in ("While", "StatelessWhile") and node.attr["parallel_iterations"].i == 1:
                one_at_a_time |= reached_functions([node.attr["body"].func.name], functions)
    convolving = {name for name, function in functions.items() if any(n.op == "Conv2D" for n in function.node_def)}
    assert convolving and convolving <= one_at_a_time, sorted(convolving - one_at_a_time)


def library(models_dir, model):
    """Version 1's MetaGraphDef and its function library, {name: FunctionDef}."""
    saved_model = saved_model_pb2.SavedModel.FromString((models_dir / model / "1" / "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    return meta_graph, {function.signature.name: function for function in meta_graph.graph_def.library.function}


def reached_functions(names, functions):
    """These functions and every function they call, at any depth."""
    reached, to_visit = set(), list(names)
    while to_visit:
        name = to_visit.pop()
        if name not in reached:
            reached.add(name)
            to_visit.extend(called_functions(functions[name].node_def, functions))
    return reached


def called_functions(nodes, functions):
    """The library functions these nodes call: as their op, or through a function attribute (f, body, branches)."""
    for node in nodes:
        if node.op in functions:
            yield node.op
        for value in node.attr.values():
            if value.HasField("func"):
                yield value.func.name
            yield from (function.name for function in value.list.func)


def test_batching_params_only_where_every_input_is_batched(standin_repository):
    for model in SPLIT:
        path = standin_repository / model / "1" / repository.BATCHING_PARAMS_FILE
        assert path.exists() == (model != "diffusion_model")
        if path.exists():
            assert "max_batch_size { value: 8 }" in path.read_text()


def test_failed_export_leaves_no_trace(tmp_path, small_components, monkeypatch):
    models_dir = tmp_path / "models"
    export_repository(small_components, models_dir, SIZE, SIZE, label="stock")
    before = snapshot(models_dir)
    real_save = repository.save_servable

    def save_then_fail_on_decoder(servable, version_dir, name, *args):
        if name == "decoder":
            raise OSError("disk full (simulated)")
        return real_save(servable, version_dir, name, *args)

    monkeypatch.setattr(repository, "save_servable", save_then_fail_on_decoder)
    with pytest.raises(OSError, match="simulated"):
        export_repository(small_components, models_dir, SIZE, SIZE, label="broken")
    assert snapshot(models_dir) == before


def test_failure_while_placing_versions_rolls_back(tmp_path, small_components, monkeypatch):
    models_dir = tmp_path / "models"
    export_repository(small_components, models_dir, SIZE, SIZE)
    before = snapshot(models_dir)

    def config_write_fails(*args):
        raise OSError("config not writable (simulated)")

    monkeypatch.setattr(repository, "write_configs", config_write_fails)
    with pytest.raises(OSError, match="simulated"):
        export_repository(small_components, models_dir, SIZE, SIZE)
    assert snapshot(models_dir) == before


SLOW_EXPORT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import standins
    from sd_export import repository
    from sd_export.export import export_repository

    real_save = repository.save_servable
    def slow_save(servable, version_dir, name, *args):
        real_save(servable, version_dir, name, *args)
        if name == "diffusion_model":
            print("saved", flush=True)
            time.sleep(60)
    repository.save_servable = slow_save
    export_repository(standins.components({size}, {size}), {models!r}, {size}, {size})
    """
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_export_leaves_nothing_tf_serving_would_load(tmp_path, small_components, how):
    """SIGTERM: the staging folder is removed at once. SIGKILL: nothing is placed, and the next export removes it."""
    models_dir = tmp_path / "models"
    export_repository(small_components, models_dir, SIZE, SIZE)
    before = snapshot(models_dir)
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = SLOW_EXPORT.format(tests=tests, size=SIZE, models=str(models_dir))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "saved"
        process.send_signal(how)
        process.wait(timeout=60)
    finally:
        process.kill()
    for model in SPLIT:
        assert repository.versions_of(models_dir, model) == [1]
    if how == signal.SIGTERM:
        assert snapshot(models_dir) == before
    else:
        assert list(models_dir.glob(".staging-*")), "expected the killed export's staging folder"
        export_repository(small_components, models_dir, SIZE, SIZE)
        assert not list(models_dir.glob(".staging-*"))


def test_outputs_equal_the_eager_models(standin_served, standin_repository):
    """The TF1-loaded text_encoder gives what the Keras model gives eagerly (the variables really were restored)."""
    components = standins.components(SIZE, SIZE, seed=1234)  # version 1's weights
    tokens = np.random.default_rng(0).integers(0, contract.VOCAB_SIZE, (2, 77)).astype(np.int32)
    positions = np.broadcast_to(np.arange(77, dtype=np.int32), (2, 77))
    expected = components.text_encoder({"tokens": tokens, "positions": positions}).numpy()
    outputs = standin_served["text_encoder"].run("serving_default", {"tokens": tokens, "negative_tokens": tokens})
    np.testing.assert_allclose(outputs["context"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["unconditional_context"], expected, rtol=1e-5, atol=1e-6)
