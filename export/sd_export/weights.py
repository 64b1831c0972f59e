"""Build KerasCV's SD v1.4 components and load their weights: stock downloads, local checkpoints, or none.

A checkpoint is a KerasCV .h5, an SD 1.x .safetensors (CompVis/LDM layout) or a diffusers folder (see
sd_export.checkpoints); no pickle-based format is ever opened. --ckpt names the U-Net's checkpoint, which also gives the
text encoder and the VAE decoder when it holds them; --text-encoder and --decoder override those parts. Every failure
becomes a WeightsError with one line naming the file, raised before anything is written.
"""

import contextlib
import dataclasses
import math

from sd_export import contract
from sd_export.checkpoints import PART_NAMES, WeightsError, missing_part_message, open_checkpoint

__all__ = ["WeightsError", "WeightSources", "Components", "build_components"]

# The file_hash KerasCV checks on its SD v1.4 DiffusionModel download (kcv_diffusion_model.h5): the stock "Model hash".
KERAS_CV_DIFFUSION_MODEL_SHA256 = "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe"
IMAGE_ENCODER_SIZE = 128  # ImageEncoder takes any size; its weights do not depend on it


@dataclasses.dataclass
class WeightSources:
    """Where each component's weights come from: a local checkpoint path, None for KerasCV's download."""

    diffusion_model: str | None = None
    text_encoder: str | None = None
    decoder: str | None = None
    random: bool = False  # no weights at all: random initialization (offline smoke tests, CI)

    def __post_init__(self):
        self._checkpoints = None

    def named(self):
        """{component: path} of the checkpoints named on the command line."""
        paths = {"diffusion_model": self.diffusion_model, "text_encoder": self.text_encoder, "decoder": self.decoder}
        return {component: str(path) for component, path in paths.items() if path is not None}

    def check_files(self):
        """Open every named checkpoint (cheap: headers only) and fail early, with one line, on one that cannot be used
        or that contradicts --random-weights. Returns {part: Checkpoint} for every part with local weights."""
        if self._checkpoints is not None:
            return self._checkpoints
        named = self.named()
        if self.random and named:
            component, path = next(iter(named.items()))
            raise WeightsError(f"--random-weights and a {component} checkpoint ({path}) exclude each other")
        opened = {component: open_checkpoint(path, component) for component, path in named.items()}
        for component, checkpoint in opened.items():
            if component not in checkpoint.parts():
                raise WeightsError(missing_part_message(checkpoint.path, component, checkpoint))
        checkpoints = dict(opened)
        if "decoder" in opened and "image_encoder" in opened["decoder"].parts():  # a replacement VAE: both halves
            checkpoints["image_encoder"] = opened["decoder"]
        if "diffusion_model" in opened:  # a whole checkpoint also gives the parts not named on their own
            for part in opened["diffusion_model"].parts():
                checkpoints.setdefault(part, opened["diffusion_model"])
        self._checkpoints = checkpoints
        return checkpoints

    def describe(self):
        if self.random:
            return "RANDOM weights (no weights loaded: images will be noise)"
        checkpoints = self.check_files()

        def origin(part):
            if part not in checkpoints:
                return "KerasCV SD v1.4 download"
            return f"{checkpoints[part].path} ({checkpoints[part].format_name})"

        return ", ".join(f"{part}: {origin(part)}" for part in ("diffusion_model", "text_encoder", "decoder"))

    def source(self):
        """The checkpoint the U-Net came from, as strings: format name and sha256 (see sd_export.checkpoints for how
        a folder's is defined); other parts' checkpoints when they differ, under <part>_format / <part>_sha256."""
        if self.random:
            return {"format": "random"}
        checkpoints = self.check_files()
        if "diffusion_model" not in checkpoints:
            return {"format": "keras_cv_download", "sha256": KERAS_CV_DIFFUSION_MODEL_SHA256}
        main = checkpoints["diffusion_model"]
        source = {"format": main.format_name, "sha256": main.sha256()}
        for part in ("text_encoder", "decoder"):
            if part in checkpoints and checkpoints[part] is not main:
                source[f"{part}_format"] = checkpoints[part].format_name
                source[f"{part}_sha256"] = checkpoints[part].sha256()
        return source


@dataclasses.dataclass
class Components:
    """The Keras models the servables call (image_encoder: only when asked for, by `sd-export convert`)."""

    text_encoder: object
    diffusion_model: object
    decoder: object
    image_encoder: object = None


def build_components(height, width, sources, precision=contract.DEFAULT_PRECISION, image_encoder=False):
    """KerasCV's TextEncoder, DiffusionModel and Decoder (and ImageEncoder) at height x width with the requested
    weights, their variables stored and computed in `precision` (float32 and half checkpoints are cast as they
    load)."""
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, ImageEncoder, TextEncoder

    contract.check_resolution(height, width)
    contract.check_precision(precision)
    checkpoints = sources.check_files()

    def download(part):
        return part not in checkpoints and not sources.random

    try:
        with dtype_policy(precision):
            components = Components(
                TextEncoder(contract.MAX_PROMPT_TOKENS, download_weights=download("text_encoder")),
                DiffusionModel(height, width, contract.MAX_PROMPT_TOKENS, download_weights=download("diffusion_model")),
                Decoder(height, width, download_weights=download("decoder")),
            )
            if image_encoder:
                components.image_encoder = ImageEncoder(download_weights=download("image_encoder"))
    except Exception as error:  # KerasCV's get_file raises several types when offline
        raise WeightsError(
            f"could not download KerasCV's SD v1.4 weights ({_first_line(error)}); pass local checkpoints "
            "(CKPT, TEXT_ENCODER, DECODER) or --random-weights"
        ) from None

    for part, checkpoint in checkpoints.items():
        model = getattr(components, part)
        if model is not None:
            load_part(checkpoint, part, model)
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
    """The dtype that holds most of the components' parameters (normalization layers keep float32)."""
    models = (components.text_encoder, components.diffusion_model, components.decoder)
    return precision_of_variables([variable for model in models for variable in model.variables])


def precision_of_variables(variables):
    """The dtype that holds most of these variables' parameters; float32 when there are none."""
    counts = {}
    for variable in variables:
        dtype = getattr(variable.dtype, "name", str(variable.dtype))
        counts[dtype] = counts.get(dtype, 0) + math.prod(variable.shape)
    return max(counts, key=counts.get) if counts else contract.DEFAULT_PRECISION


def load_part(checkpoint, part, model):
    """One part's weights into its KerasCV model: the whole plan is checked before a variable is set."""
    if part not in checkpoint.parts():
        raise WeightsError(missing_part_message(checkpoint.path, part, checkpoint))
    try:
        checkpoint.load_into(part, model)
    except WeightsError:
        raise
    except (ValueError, KeyError, OSError) as error:
        raise WeightsError(f"{checkpoint.path}: {PART_NAMES[part]} could not be read ({_first_line(error)})") from None


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
