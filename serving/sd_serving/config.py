"""The model server config (a ModelServerConfig text proto): which folders to load as which model versions.

Parsed with protobuf's text_format into tensorflow_serving's own config classes, so a file TF Serving accepts means the
same here. The one deviation from TF Serving's path handling: a base_path under /models/ that does not exist on this
machine (compose mounts models/ there) is taken relative to the folder holding the config file, which sits at the
mount's root.
"""

import dataclasses
from pathlib import Path, PurePosixPath

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

CONTAINER_ROOT = PurePosixPath("/models")
TENSORFLOW_PLATFORM = "tensorflow"


class ConfigError(Exception):
    """A config the server cannot start with; the message names the file, model or folder."""


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """One model of the config resolved against the file system: the versions to load and the labels."""

    name: str
    base_path: Path
    versions: tuple  # ascending
    labels: dict  # label -> version

    def version_path(self, version):
        return self.base_path / str(version)


def read_config(config_path):
    """The ModelServerConfig in `config_path`; ConfigError if it cannot be read or parsed."""
    config_path = Path(config_path)
    try:
        text = config_path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read --model_config_file {config_path}: {error.strerror}") from None
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"{config_path} is not a valid ModelServerConfig text proto: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{config_path}: only model_config_list is supported (no custom_model_config)")
    return config


def plan_models(config_path):
    """Every model of the config with the versions its policy selects; ConfigError naming what is wrong."""
    config_path = Path(config_path)
    config = read_config(config_path)
    entries = config.model_config_list.config
    if not entries:
        raise ConfigError(f"{config_path} lists no models")
    names = [entry.name for entry in entries]
    for name in names:
        if not name:
            raise ConfigError(f"{config_path}: a model has no name")
        if names.count(name) > 1:
            raise ConfigError(f"Illegal to list model {name} multiple times in config list ({config_path})")
    return [_plan_model(entry, config_path) for entry in entries]


def _plan_model(entry, config_path):
    if entry.model_platform != TENSORFLOW_PLATFORM:
        raise ConfigError(
            f"model {entry.name}: model_platform {entry.model_platform!r} is not supported "
            f"(set model_platform: '{TENSORFLOW_PLATFORM}')"
        )
    base_path = resolve_base_path(entry.base_path, config_path)
    if not base_path.is_dir():
        raise ConfigError(f"model {entry.name}: base_path {base_path} is not a folder")
    available = version_folders(base_path)
    versions = select_versions(entry, available, base_path)
    labels = dict(entry.version_labels)
    for label, version in labels.items():
        if version not in versions:
            raise ConfigError(
                f"model {entry.name}: label {label!r} names version {version}, which is not among the versions "
                f"being loaded ({_listing(versions)})"
            )
    return ModelPlan(entry.name, base_path, tuple(versions), labels)


def resolve_base_path(base_path, config_path):
    """TF Serving wants an absolute base_path; a /models/... path missing here is relative to the config's folder."""
    if not base_path:
        raise ConfigError(f"{config_path}: a model has an empty base_path")
    path = PurePosixPath(base_path)
    if not path.is_absolute():
        raise ConfigError(f"Expected an absolute path for base_path; got {base_path!r} in {config_path}")
    if not Path(path).exists() and path.is_relative_to(CONTAINER_ROOT):
        return Path(config_path).resolve().parent / path.relative_to(CONTAINER_ROOT)
    return Path(path)


def version_folders(base_path):
    """The numeric sub-folders of a base path (TF Serving ignores every other name)."""
    return sorted(int(entry.name) for entry in base_path.iterdir() if entry.name.isdigit() and entry.is_dir())


def select_versions(entry, available, base_path):
    """The versions the model_version_policy serves: latest {num_versions} (the default, 1), all {}, specific {}."""
    policy = entry.model_version_policy.WhichOneof("policy_choice")
    if not available:
        raise ConfigError(f"model {entry.name}: no version folders (numeric names) under {base_path}")
    if policy == "all":
        return available
    if policy == "specific":
        wanted = sorted(set(entry.model_version_policy.specific.versions))
        if not wanted:
            raise ConfigError(f"model {entry.name}: the specific version policy lists no versions")
        missing = [version for version in wanted if version not in available]
        if missing:
            raise ConfigError(
                f"model {entry.name}: version(s) {_listing(missing)} of the specific policy not found under "
                f"{base_path} (found {_listing(available)})"
            )
        return wanted
    num_versions = max(entry.model_version_policy.latest.num_versions, 1)  # TF Serving's default is 1
    return available[-num_versions:]


def _listing(versions):
    return ", ".join(str(version) for version in versions) or "none"
