"""Build KerasCV's SD v1.4 components and load their weights: stock downloads, local .h5 files, or none.

Only HDF5 weight files are read (KerasCV's downloads and Keras' save_weights, legacy or .weights.h5 layout): no
pickle-based format is ever opened. Every failure becomes a WeightsError with one line naming the file and what was
expected, raised before anything is written.
"""

import contextlib
import dataclasses
import math
import os

import h5py

from sd_export import contract


class WeightsError(Exception):
    """A weights file that cannot be used; the message is one line naming the file."""


@dataclasses.dataclass
class WeightSources:
    """Where each component's weights come from: a local .h5 path, None for KerasCV's download."""

    diffusion_model: str | None = None
    text_encoder: str | None = None
    decoder: str | None = None
    random: bool = False  # no weights at all: random initialization (offline smoke tests, CI)

    def files(self):
        """{component: path} of the local weight files."""
        paths = {"diffusion_model": self.diffusion_model, "text_encoder": self.text_encoder, "decoder": self.decoder}
        return {component: path for component, path in paths.items() if path is not None}

    def check_files(self):
        """Fail early, with one line, on files that cannot be used or that contradict --random-weights."""
        for component, path in self.files().items():
            if self.random:
                raise WeightsError(f"--random-weights and a {component} weights file ({path}) exclude each other")
            check_weights_file(path, component)

    def describe(self):
        if self.random:
            return "RANDOM weights (no weights loaded: images will be noise)"
        return ", ".join(
            f"{name}: {path or 'KerasCV SD v1.4 download'}"
            for name, path in (
                ("diffusion_model", self.diffusion_model),
                ("text_encoder", self.text_encoder),
                ("decoder", self.decoder),
            )
        )


@dataclasses.dataclass
class Components:
    """The three Keras models the servables call."""

    text_encoder: object
    diffusion_model: object
    decoder: object


def check_weights_file(path, component):
    """Fail early, with one line, on a file that is missing, not HDF5, or truncated."""
    if not os.path.isfile(path):
        raise WeightsError(f"{component} weights {path}: no such file (expected an .h5 of {component} weights)")
    if not path.endswith((".h5", ".hdf5")):
        raise WeightsError(f"{component} weights {path}: expected an HDF5 weights file ending in .h5")
    if not h5py.is_hdf5(path):
        raise WeightsError(f"{component} weights {path}: not an HDF5 file (expected Keras save_weights output)")
    try:
        with h5py.File(path, "r") as handle:
            handle.visit(lambda name: None)  # walks every group: a truncated file fails here
    except (OSError, RuntimeError) as error:
        raise WeightsError(f"{component} weights {path}: unreadable HDF5 ({_first_line(error)})") from None


def build_components(height, width, sources, precision=contract.DEFAULT_PRECISION):
    """KerasCV's TextEncoder, DiffusionModel and Decoder at height x width with the requested weights, their
    variables stored and computed in `precision` (float32 weight files are cast as they load)."""
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, TextEncoder

    contract.check_resolution(height, width)
    contract.check_precision(precision)
    sources.check_files()

    def download(path):
        return path is None and not sources.random

    try:
        with dtype_policy(precision):
            text_encoder = TextEncoder(contract.MAX_PROMPT_TOKENS, download_weights=download(sources.text_encoder))
            diffusion_model = DiffusionModel(
                height, width, contract.MAX_PROMPT_TOKENS, download_weights=download(sources.diffusion_model)
            )
            decoder = Decoder(height, width, download_weights=download(sources.decoder))
    except Exception as error:  # KerasCV's get_file raises several types when offline
        raise WeightsError(
            f"could not download KerasCV's SD v1.4 weights ({_first_line(error)}); pass local .h5 files "
            "(CKPT, TEXT_ENCODER, DECODER) or --random-weights"
        ) from None

    components = Components(text_encoder, diffusion_model, decoder)
    for component, path in sources.files().items():
        load_weights(getattr(components, component), path, component)
    return components


@contextlib.contextmanager
def dtype_policy(precision):
    """Keras layers built inside store their variables in `precision` and compute in it, except where Keras' mixed
    precision keeps float32.

    Keras' mixed_* policies store every variable in float32, which would halve nothing; a plain half policy stores
    everything in half, normalization scales and offsets too. So the normalization layers get the mixed policy
    (float32 scale and offset, a few hundred kB in all; statistics in float32, as Keras computes them under any
    policy) and every other layer the plain one: the same arithmetic as KerasCV under
    `keras.mixed_precision.set_global_policy("mixed_" + precision)`, with half the bytes. Keras' policy is global,
    so the previous one is restored on the way out."""
    import keras

    policy = keras.DTypePolicy(precision)
    if precision != "float32":
        policy = keras.dtype_policies.DTypePolicyMap(default_policy=policy)
        policy[NORMALIZATION_LAYER_PATHS] = keras.DTypePolicy(f"mixed_{precision}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# Layer paths (Keras' Layer.path) of KerasCV's GroupNormalization and LayerNormalization layers, at any depth.
NORMALIZATION_LAYER_PATHS = r"(.*/)?(group|layer)_normalization(_\d+)?"


def precision_of(components):
    """The dtype that holds most of the components' parameter bytes (normalization layers keep float32)."""
    counts = {}
    for model in (components.text_encoder, components.diffusion_model, components.decoder):
        for variable in model.variables:
            counts[str(variable.dtype)] = counts.get(str(variable.dtype), 0) + math.prod(variable.shape)
    return max(counts, key=counts.get)


def load_weights(model, path, component):
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises ValueError, KeyError or OSError depending on the mismatch
        raise WeightsError(
            f"{component} weights {path}: do not fit KerasCV's SD v1.4 {component} ({_first_line(error)})"
        ) from None


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
