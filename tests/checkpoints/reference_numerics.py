"""The reference numerics in KerasCV's SD v1.4 models, for the oracle only: KerasCV computing as diffusers and CompVis do.

KerasCV departs from them in two places, both chosen when its weights were ported:
- GEGLU's gate uses the tanh approximation of GELU; diffusers and CompVis use the exact (erf) GELU;
- every GroupNorm has epsilon 1e-5; diffusers and CompVis use 1e-6 in the U-Net's spatial transformers and in every
  norm of the VAE (the U-Net's resnets and output norm use 1e-5 in both).
test_oracle.py switches them to show that these two are the whole difference from diffusers' forward passes, and
measure_numerics.py to show what is left of a whole generation. Not an export option: over a whole 20-step generation
KerasCV's numerics moved the image by at most 1 uint8 level (README, Checkpoints), so the export keeps KerasCV's.
"""

import types

KERAS_CV = "keras_cv"
REFERENCE = "reference"
CHOICES = (KERAS_CV, REFERENCE)
REFERENCE_GROUP_NORM_EPSILON = 1e-6
KERAS_CV_GROUP_NORM_EPSILON = 1e-5  # every GroupNormalization KerasCV builds


def set_numerics(components, numerics):
    """Switch the components' models (in place) to `numerics` (REFERENCE or KERAS_CV, which undoes REFERENCE); returns
    how many layers it set. Call it before the models are traced (the export traces them afterwards)."""
    import keras
    from keras_cv.src.models.stable_diffusion.diffusion_model import GEGLU, SpatialTransformer

    if numerics not in CHOICES:
        raise ValueError(f"numerics {numerics!r}: choose one of {', '.join(CHOICES)}")
    reference = numerics == REFERENCE
    epsilon = REFERENCE_GROUP_NORM_EPSILON if reference else KERAS_CV_GROUP_NORM_EPSILON
    changed = 0
    for layer in walk(components.diffusion_model):
        if isinstance(layer, GEGLU):
            if reference:
                layer.call = types.MethodType(exact_geglu_call, layer)  # Layer.__call__ runs the instance's call
            else:
                vars(layer).pop("call", None)  # back to GEGLU.call
            changed += 1
        elif isinstance(layer, SpatialTransformer):
            layer.norm.epsilon = epsilon
            changed += 1
    for model in (components.decoder, getattr(components, "image_encoder", None)):
        for layer in walk(model):
            if isinstance(layer, keras.layers.GroupNormalization):
                layer.epsilon = epsilon
                changed += 1
    for model in (components.diffusion_model, components.decoder, getattr(components, "image_encoder", None)):
        if model is not None:
            model.predict_function = None  # a predict function traced before the switch would keep the old numerics
    return changed


def exact_geglu_call(self, inputs):
    from keras import ops

    x = self.dense(inputs)
    value, gate = x[..., : self.output_dim], x[..., self.output_dim :]
    return value * ops.gelu(gate, approximate=False)


def walk(model):
    """Every layer under `model` (Keras' own _flatten_layers reaches sub-layers held as attributes and in lists)."""
    return model._flatten_layers(include_self=False, recursive=True) if model is not None else ()
