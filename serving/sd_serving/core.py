"""The served models: every version of the config loaded, labels resolved, requests routed to a version.

Plays the part of TF Serving's ServerCore, with its error codes and messages (model_servers/server_core.cc,
core/basic_manager.cc, get_model_status_impl.cc, get_model_metadata_impl.cc) so clients see the same behaviour.
Everything loads before the ports open, as TF Serving does on its first config, so every listed version is AVAILABLE.
"""

import logging

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from sd_serving import warmup
from sd_serving.errors import invalid_argument, not_found
from sd_serving.servable import LoadedVersion, LoadError

SIGNATURE_DEF_FIELD = "signature_def"  # the one metadata field TF Serving supports

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, versions, labels):
        self.versions = versions  # model -> {version: LoadedVersion}
        self.labels = labels  # model -> {label: version}

    @classmethod
    def load(cls, plans, enable_warmup=True):
        """Load (and warm up) every version of `plans` (config.plan_models); LoadError names what failed."""
        versions, labels = {}, {}
        registry = cls(versions, labels)
        try:
            for plan in plans:
                versions[plan.name] = {}
                labels[plan.name] = dict(plan.labels)
                for version in plan.versions:
                    versions[plan.name][version] = load_version(
                        plan.name, version, plan.version_path(version), enable_warmup
                    )
        except BaseException:
            registry.close()
            raise
        return registry

    def model_names(self):
        return sorted(self.versions)

    def resolve(self, name, version=None, label=None):
        """The LoadedVersion a model spec asks for: a version, a label, or (neither) the latest."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        if version is not None and label is not None:
            raise invalid_argument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if label is not None:
            version = self.version_for_label(name, label)
        loaded = self.versions.get(name, {})
        if version is None:
            if not loaded:
                raise not_found(f"Servable not found for request: Latest({name}){self._served_models()}")
            return loaded[max(loaded)]
        if version not in loaded:
            available = (
                f" (loaded versions: {', '.join(map(str, sorted(loaded)))})" if loaded else self._served_models()
            )
            raise not_found(f"Servable not found for request: Specific({name}, {version}){available}")
        return loaded[version]

    def version_for_label(self, name, label):
        labels = self.labels.get(name, {})
        if label not in labels:
            known = f" (labels of {name}: {', '.join(sorted(labels))})" if labels else ""
            raise invalid_argument(f"Unrecognized servable version label: {label}{known}")
        return labels[label]

    def _served_models(self):
        return f" (this server has: {', '.join(self.model_names())})"

    def status(self, name, version=None, label=None):
        """GetModelStatusResponse for one version or (no version) every version of the model.

        Deviation: TF Serving ignores a label here and lists every version; the local server answers for the
        labelled version (and refuses an unknown label), which is what a client asking about a label means.
        """
        if label is not None:
            version = self.version_for_label(name, label)
        loaded = self.versions.get(name)
        if not loaded:
            raise not_found(f"Could not find any versions of model {name}{self._served_models() if name else ''}")
        if version is not None and version not in loaded:
            raise not_found(f"Could not find version {version} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in [version] if version is not None else sorted(loaded):
            entry = response.model_version_status.add(
                version=number, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
            )
            entry.status.error_code = 0  # OK, spelled out as TF Serving's JSON shows it
        return response

    def metadata(self, name, version=None, label=None, fields=(SIGNATURE_DEF_FIELD,)):
        """GetModelMetadataResponse with the version's signature_def map (packed in an Any, as TF Serving sends)."""
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        loaded = self.resolve(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(model_spec(loaded))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in loaded.signatures.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def close(self):
        for versions in self.versions.values():
            for loaded in versions.values():
                loaded.close()


def model_spec(loaded, signature_name=None):
    spec = model_pb2.ModelSpec(name=loaded.name)
    spec.version.value = loaded.version
    if signature_name:
        spec.signature_name = signature_name
    return spec


def load_version(name, version, path, enable_warmup):
    log.info("Loading model %s version %s from %s", name, version, path)
    loaded = LoadedVersion.load(name, version, path)
    if enable_warmup:
        try:
            count = warmup.run_warmup(loaded)
        except warmup.WarmupError as error:
            loaded.close()
            raise LoadError(f"Failed to warm up model {name} version {version} from {path}: {error}") from None
        log.info("Model %s version %s: ran %d warmup record(s)", name, version, count)
    return loaded
