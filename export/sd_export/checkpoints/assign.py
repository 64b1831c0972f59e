"""Source tensors -> KerasCV variables: the assignment kinds, and the helpers the name modules build plans with.

A plan is a list of Assignment(variable, key, kind): the Keras variable to set, the source tensor's name (relative to
the part's prefix in the checkpoint) and how PyTorch's layout becomes Keras'. The name modules (unet_names,
clip_names, vae_names) walk KerasCV's layers and call the helpers below; nothing here depends on weight order.
"""

import dataclasses

import numpy as np

DENSE = "dense"  # torch Linear (out, in) -> Keras Dense kernel (in, out)
CONV = "conv"  # torch Conv2d (O, I, H, W) -> Keras Conv2D (H, W, I, O); a 1x1 conv may be stored as a 2-D linear
AS_IS = "as_is"  # biases, norm scales and offsets, embeddings


@dataclasses.dataclass(frozen=True)
class Assignment:
    variable: object
    key: str
    kind: str


def converted(array, kind, target_shape):
    """The source array in Keras' layout, or None when its shape cannot become target_shape."""
    if kind == DENSE:
        array = array.T if array.ndim == 2 else None
    elif kind == CONV:
        if array.ndim == 2 and len(target_shape) == 4 and target_shape[:2] == (1, 1):
            array = array[:, :, None, None]  # 1x1 attention projections stored as linears
        array = np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else None
    if array is None or tuple(array.shape) != tuple(target_shape):
        return None
    return array


def converted_shape(shape, kind, target_shape):
    """converted() on shapes alone: checks a plan against a header without reading any tensor."""
    return converted(np.empty(shape, np.bool_) if shape else np.empty((), np.bool_), kind, target_shape)


def dense(layer, key):
    plan = [Assignment(layer.kernel, f"{key}.weight", DENSE)]
    if layer.bias is not None:
        plan.append(Assignment(layer.bias, f"{key}.bias", AS_IS))
    return plan


def conv(padded_conv, key):
    """KerasCV's PaddedConv2D wraps a Keras Conv2D."""
    layer = padded_conv.conv2d
    return [Assignment(layer.kernel, f"{key}.weight", CONV), Assignment(layer.bias, f"{key}.bias", AS_IS)]


def norm(layer, key):
    """GroupNormalization and LayerNormalization: gamma is torch's weight, beta its bias."""
    return [Assignment(layer.gamma, f"{key}.weight", AS_IS), Assignment(layer.beta, f"{key}.bias", AS_IS)]


def embedding(layer, key):
    return [Assignment(layer.embeddings, f"{key}.weight", AS_IS)]


def of_type(model, class_name, expected_count):
    """The model's top-level layers of one class, in data-flow order (each family lies on one chain), counted."""
    layers = [layer for layer in model.layers if type(layer).__name__ == class_name]
    if len(layers) != expected_count:
        raise ValueError(
            f"{model.name}: {len(layers)} {class_name} layers where SD 1.x has {expected_count}: not KerasCV's SD 1.x"
        )
    return layers
