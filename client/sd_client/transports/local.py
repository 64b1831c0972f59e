"""The in-process transport: the same signatures run from a model folder in this process, no server.

It runs a SavedModel the way TF Serving does: `tf.compat.v1.saved_model.loader.load` (tag "serve") in its own
tf.Graph and session, then `session.run` on the signature's tensor names. TensorFlow is imported here only, when the
transport is built (`pip install "./client[local]"`).

Which models it serves, with which versions and labels (the version policies and labels of the config, as TF Serving
reads them):
- a config file (models/models.config or models/text_to_image.config): exactly the models it lists, as a server
  started on that file would; base paths are resolved against the file's folder.
- a model folder: every model of both configs the exporter writes there (models.config: the three split models;
  text_to_image.config: the one-request model), else, without configs, each model folder's highest version.
  A server loads one config or the other because each loaded model holds its weights; here a model version loads on
  first use, so serving both costs nothing until both are used: generate() runs text_to_image alone when it serves
  the version asked for (see Client.generate), the step methods (encode_text, diffuse, decode) load the split models.
"""

import pathlib
import re
import threading

import numpy as np

from .. import errors
from ..proto import tf_serving_config_pb2
from .base import VersionStatus, as_bytes_array, describe_signature, shape_from_dims

# The exporter's configs, in the order a folder reads them (a model listed in both keeps the first entry).
CONFIG_FILENAMES = ("models.config", "text_to_image.config")
CONTAINER_MODELS_ROOT = "/models/"  # base paths in models.config are the container's; see _resolve_base_path


def import_tensorflow():
    """TensorFlow, or MissingTensorFlow saying what to do instead."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise errors.MissingTensorFlow(
            "running the models in this process needs TensorFlow, which is not installed: pass the URL of a model "
            'server (--url http://HOST:8501 or grpc://HOST:8500) or pip install "./client[local]"'
        ) from e
    return tf


def _register_tf_text_ops_if_used(meta_graph, model):
    """TF Text's ops (text_to_image's tokenizer) are linked into the model server; here they come with
    `import tensorflow_text`, about 120 MB of resident memory, so it is imported only for a model that uses one."""
    from tensorflow.python.framework import op_def_registry

    used = {op.name for op in meta_graph.meta_info_def.stripped_op_list.op}
    if all(op_def_registry.get(name) is not None for name in used):
        return
    try:
        import tensorflow_text  # noqa: F401
    except ImportError as e:
        raise errors.MissingTensorFlow(
            f"{model} uses TF Text's ops, which need tensorflow-text: pip install \"./client[local]\""
        ) from e


class LocalTransport:
    def __init__(self, models_dir="models"):
        """models_dir: a model folder, or one model server config file in it (serve only the models it lists)."""
        self.models_dir = pathlib.Path(models_dir)
        if not self.models_dir.exists():
            raise errors.NotFound(
                f"model folder {self.models_dir} does not exist: export models first (make export) or pass --url"
            )
        self._tf = import_tensorflow()
        self._models = read_repository(self.models_dir)
        self._loaded = {}  # (model, version) -> _LoadedModel
        self._lock = threading.Lock()

    def __repr__(self):
        return f"LocalTransport({str(self.models_dir)!r})"

    def close(self):
        with self._lock:
            for loaded in self._loaded.values():
                loaded.session.close()
            self._loaded.clear()

    def predict(self, model, signature, inputs, *, version=None, label=None):
        loaded = self._load(model, self._resolve_version(model, version, label))
        return loaded.run(signature, inputs)

    def model_status(self, model, *, version=None, label=None):
        served = self._served(model)
        if version is None and label is None:
            return [VersionStatus(v, "AVAILABLE") for v in sorted(served.versions, reverse=True)]
        return [VersionStatus(self._resolve_version(model, version, label), "AVAILABLE")]

    def signatures(self, model, *, version=None, label=None):
        loaded = self._load(model, self._resolve_version(model, version, label))
        # TensorFlow's own __saved_model_init_op is no serving signature (sd-model-server's metadata leaves it out too).
        return {name: loaded.describe(name) for name in loaded.signature_defs if not name.startswith("__")}

    def _served(self, model):
        served = self._models.get(model)
        if served is None:
            raise errors.NotFound(f"Servable not found for request: model {model} is not in {self.models_dir}")
        return served

    def _resolve_version(self, model, version, label):
        """TF Serving's rules: a label must be configured, a version must be served, neither means the highest."""
        served = self._served(model)
        if label is not None:
            if label not in served.labels:
                raise errors.InvalidArgument(f"Unrecognized servable version label: {label}", model=model)
            version = served.labels[label]
        if version is None:
            return max(served.versions)
        if int(version) not in served.versions:
            raise errors.NotFound(f"Could not find version {version} of model {model}", model=model)
        return int(version)

    def _load(self, model, version):
        with self._lock:  # one load per model version even when threads ask at once
            key = (model, version)
            if key not in self._loaded:
                path = self._models[model].versions[version]
                self._loaded[key] = _LoadedModel(self._tf, path, model)
            return self._loaded[key]


class _ServedModel:
    def __init__(self, versions, labels):
        self.versions = versions  # version -> SavedModel folder
        self.labels = labels  # label -> version


def read_repository(path):
    """model name -> _ServedModel: from a config file; for a folder, from its configs, else each model folder's
    highest version."""
    path = pathlib.Path(path)
    config_paths = [path] if path.is_file() else [path / name for name in CONFIG_FILENAMES if (path / name).is_file()]
    if config_paths:
        models = {}
        for config_path in config_paths:
            for config in read_config(config_path):
                models.setdefault(config.name, _served_from_config(config, config_path.parent))
        return models
    return _highest_versions(path)


def _highest_versions(models_dir):
    models = {}
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        versions = _version_folders(folder)
        if versions:
            latest = max(versions)
            models[folder.name] = _ServedModel({latest: versions[latest]}, {})
    return models


def read_config(config_path):
    """The model configs of a ModelServerConfig text proto (fields the client does not use are skipped)."""
    from google.protobuf import text_format

    config = tf_serving_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(config_path.read_text(), config, allow_unknown_field=True)
    except text_format.ParseError as e:
        raise errors.FailedPrecondition(f"{config_path} is not a valid model server config: {e}") from e
    return list(config.model_config_list.config)


def _served_from_config(config, models_dir):
    base = _resolve_base_path(config.base_path, models_dir)
    on_disk = _version_folders(base)
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "specific":
        versions = {v: on_disk[v] for v in policy.specific.versions if v in on_disk}
    elif choice == "all":
        versions = dict(on_disk)
    else:  # latest, TF Serving's default; num_versions 0 means 1
        keep = sorted(on_disk, reverse=True)[: max(policy.latest.num_versions, 1)]
        versions = {v: on_disk[v] for v in keep}
    labels = {label: int(v) for label, v in config.version_labels.items()}
    return _ServedModel(versions, labels)


def _resolve_base_path(base_path, models_dir):
    """models.config names the container's paths (/models/<model>). Off the container they are resolved against the
    folder that holds the config, as the local server does; relative paths too."""
    path = pathlib.Path(base_path)
    if path.is_absolute() and path.exists():
        return path
    if base_path.startswith(CONTAINER_MODELS_ROOT):
        return models_dir / base_path[len(CONTAINER_MODELS_ROOT) :]
    return models_dir / path


def _version_folders(base):
    """version number -> folder, for every numeric subfolder holding a saved_model.pb (a half-written one has none)."""
    if not base.is_dir():
        return {}
    return {
        int(p.name): p
        for p in base.iterdir()
        if p.is_dir() and re.fullmatch(r"\d+", p.name) and (p / "saved_model.pb").is_file()
    }


class _LoadedModel:
    """One SavedModel version in its own graph and session."""

    def __init__(self, tf, path, model):
        self._tf = tf
        self.model = model
        from tensorflow.python.saved_model import loader_impl  # what tf.compat.v1's loader.load runs, in two steps

        try:
            loader = loader_impl.SavedModelLoader(str(path))
            meta_graph_def = loader.get_meta_graph_def_from_tags(["serve"])
        except Exception as e:  # a broken or foreign folder: say which
            raise errors.FailedPrecondition(f"cannot load the SavedModel {path}: {e}", model=model) from e
        _register_tf_text_ops_if_used(meta_graph_def, model)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                meta_graph = loader.load(self.session, ["serve"])
        except Exception as e:
            self.session.close()
            raise errors.FailedPrecondition(f"cannot load the SavedModel {path}: {e}", model=model) from e
        self.signature_defs = dict(meta_graph.signature_def)

    def describe(self, name):
        signature = self.signature_defs[name]

        def tensors(infos):
            return {
                key: (self._tf.dtypes.as_dtype(info.dtype).name, shape_from_dims(d.size for d in info.tensor_shape.dim))
                for key, info in infos.items()
            }

        return describe_signature(tensors(signature.inputs), tensors(signature.outputs), signature.method_name)

    def run(self, signature, inputs):
        """session.run by the signature's tensor names; TF Serving's checks on names first."""
        if signature not in self.signature_defs:
            raise errors.InvalidArgument(
                f"Serving signature name: \"{signature}\" not found in signature def", model=self.model
            )
        definition = self.signature_defs[signature]
        missing = sorted(set(definition.inputs) - set(inputs))
        unknown = sorted(set(inputs) - set(definition.inputs))
        if missing or unknown:
            raise errors.InvalidArgument(
                f"signature {signature} inputs: missing {missing}, unknown {unknown}", model=self.model
            )
        feed = {definition.inputs[name].name: _feed_value(value) for name, value in inputs.items()}
        names = sorted(definition.outputs)
        try:
            values = self.session.run([definition.outputs[name].name for name in names], feed_dict=feed)
        except self._tf.errors.OpError as e:
            raise errors.from_code(e.error_code, e.message, model=self.model) from None
        except (ValueError, TypeError) as e:  # feed of the wrong shape or dtype, refused before running
            raise errors.InvalidArgument(str(e), model=self.model) from None
        return {name: _output_value(value) for name, value in zip(names, values)}


def _feed_value(value):
    array = np.asarray(value)
    return as_bytes_array(array) if array.dtype.kind in "OSU" else array


def _output_value(value):
    array = np.asarray(value)
    return as_bytes_array(array) if array.dtype.kind in "OS" else array
