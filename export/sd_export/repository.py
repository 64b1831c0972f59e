"""The TF Serving model repository under models/: versions, labels, models.config, written atomically.

TF Serving polls every model's base path and loads any new numeric version folder it sees, so a version folder must
appear only when complete. Each export writes its versions into a hidden staging folder beside them, renames them
into place only when every model is complete, and then replaces models.config in one os.replace. A failed or
interrupted export removes its staging folder; one killed outright leaves it for the next export to remove.

Version bookkeeping is plain Python, so the CLI refuses a taken version or a bad label before importing TensorFlow.
"""

import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from google.protobuf import text_format

from sd_export import contract

CONFIG_FILE = "models.config"
TEXT_TO_IMAGE_CONFIG_FILE = "text_to_image.config"
CONTAINER_ROOT = "/models"  # where compose mounts models/
STAGING_PREFIX = ".staging-"
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_]+")
# Only models whose inputs all have a batch dimension can be batched by TF Serving (diffusion_model has scalars).
BATCHED_MODELS = (contract.TEXT_ENCODER, contract.DECODER)
BATCHING_PARAMS_FILE = "batching_params.pbtxt"


class RepositoryError(Exception):
    """A request the repository refuses (an existing version, a bad label); the message is one line."""


def versions_of(models_dir, model):
    folder = Path(models_dir) / model
    if not folder.is_dir():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir() if entry.name.isdigit() and entry.is_dir())


def next_version(models_dir, models):
    return 1 + max((v for model in models for v in versions_of(models_dir, model)), default=0)


def check_label(label):
    if label is not None and not LABEL_PATTERN.fullmatch(label):
        raise RepositoryError(f"label {label!r} is not valid: TF Serving labels match [a-zA-Z0-9_]+")


def choose_version(models_dir, models, version):
    if version is None:
        return next_version(models_dir, models)
    if version < 1:
        raise RepositoryError(f"version {version} is not valid: versions are positive integers")
    taken = [model for model in models if version in versions_of(models_dir, model)]
    if taken:
        raise RepositoryError(
            f"version {version} already exists for {', '.join(taken)} in {models_dir}: "
            "versions are never overwritten; omit VERSION to take the next free one"
        )
    return version


def write_version(servables, models_dir, version, label, height, width, max_batch, provenance):
    """Save each servable as `version` of its model, atomically; label it; rewrite the configs. Returns the paths."""
    models_dir = Path(models_dir)
    check_label(label)
    models_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(models_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=models_dir))
    placed = []
    try:
        with _signals_raise():
            for name, servable in servables.items():
                version_dir = staging / name / str(version)
                save_servable(servable, version_dir, name, height, width, max_batch, provenance)
            for name in servables:
                final = models_dir / name / str(version)
                final.parent.mkdir(exist_ok=True)
                os.rename(staging / name / str(version), final)
                placed.append(final)
            write_configs(models_dir, {name: (label, version) for name in servables} if label else {})
    except BaseException:
        for final in placed:  # all of the set or none of it
            shutil.rmtree(final, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return placed


def save_servable(servable, version_dir, name, height, width, max_batch, provenance):
    import tensorflow as tf

    from sd_export.warmup import write_warmup

    from sd_export.provenance import provenance_function

    signatures = servable.signatures()
    if contract.PROVENANCE_SIGNATURE in contract.SIGNATURES[name]:
        values = {key: str(provenance.get(key, "")) for key in contract.PROVENANCE_KEYS}
        signatures[contract.PROVENANCE_SIGNATURE] = provenance_function(name, values).get_concrete_function()
    tf.saved_model.save(servable, str(version_dir), signatures=signatures)
    write_warmup(version_dir, name, height, width)
    if name in BATCHED_MODELS:
        (version_dir / BATCHING_PARAMS_FILE).write_text(batching_params(max_batch))
    info = dict(provenance, model=name, height=height, width=width, max_batch=max_batch)
    (version_dir / "assets.extra" / "sd_export.json").write_text(json.dumps(info, indent=2) + "\n")


def batching_params(max_batch):
    """Per-model batching (read with --enable_per_model_batching_parameters): merge concurrent small requests."""
    return (
        f"max_batch_size {{ value: {max_batch} }}\n"
        "batch_timeout_micros { value: 5000 }\n"
        "max_enqueued_batches { value: 64 }\n"
        "num_batch_threads { value: 4 }\n"
    )


def new_config():
    from tensorflow_serving.config import model_server_config_pb2  # imports TensorFlow

    return model_server_config_pb2.ModelServerConfig()


def read_config(path):
    config = new_config()
    if path.is_file():
        text_format.Parse(path.read_text(), config)
    return config


def existing_labels(config):
    return {entry.name: dict(entry.version_labels) for entry in config.model_config_list.config}


def write_configs(models_dir, new_labels):
    """models.config serves the split models, text_to_image.config the one-request model: one of the two per server.

    new_labels: {model: (label, version)}; a label that already exists moves to the new version.
    """
    groups = {CONFIG_FILE: contract.SPLIT_MODELS, TEXT_TO_IMAGE_CONFIG_FILE: (contract.TEXT_TO_IMAGE,)}
    for file_name, models in groups.items():
        path = models_dir / file_name
        labels = existing_labels(read_config(path))
        present = [model for model in models if versions_of(models_dir, model)]
        if not present:
            continue
        config = new_config()
        for model in present:
            entry = config.model_config_list.config.add(
                name=model, base_path=f"{CONTAINER_ROOT}/{model}", model_platform="tensorflow"
            )
            # `specific`: every exported version stays loaded, so stock and fine-tuned U-Nets run side by side.
            entry.model_version_policy.specific.versions.extend(versions_of(models_dir, model))
            # A label of a version whose folder was removed would make TF Serving refuse the config: drop it.
            model_labels = {label: v for label, v in labels.get(model, {}).items() if v in versions_of(models_dir, model)}
            if model in new_labels:
                label, version = new_labels[model]
                model_labels[label] = version
            for label, version in sorted(model_labels.items()):
                entry.version_labels[label] = version
        _replace_atomically(path, text_format.MessageToString(config))


def remove_stale_staging(models_dir):
    """Remove staging folders left by exports that were killed outright (their process no longer exists)."""
    for entry in Path(models_dir).glob(f"{STAGING_PREFIX}*"):
        pid = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_atomically(path, text):
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


class _signals_raise:
    """Turn SIGTERM/SIGHUP into SystemExit while writing, so the cleanup above runs when an export is stopped."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self._previous = {}
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._raise)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    @staticmethod
    def _raise(signum, frame):
        raise SystemExit(128 + signum)
