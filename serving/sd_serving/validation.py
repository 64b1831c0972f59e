"""Check a request's tensors against the signature before running it, so a bad request gets a message naming the
input instead of a TensorFlow runtime error (or, worse, a silent cast by the session's feed)."""

import numpy as np
import tensorflow as tf

from sd_serving.errors import invalid_argument


def dtype_name(dtype_enum):
    """'int32', 'float32', 'string' ... for a DataType enum (the names TF Serving's messages use)."""
    try:
        return tf.dtypes.as_dtype(dtype_enum).name
    except TypeError:
        return f"DataType({dtype_enum})"


def signature_shape(tensor_info):
    """The signature's shape as a list (-1 = any size), or None when its rank is unknown."""
    shape = tensor_info.tensor_shape
    if shape.unknown_rank:
        return None
    return [dim.size for dim in shape.dim]


def format_shape(shape):
    return "[" + ",".join(str(size) for size in shape) + "]"


def check_input_names(signature, names):
    """Every signature input sent, nothing else; the message is TF Serving's (predict_util.cc)."""
    sent, expected = set(names), set(signature.inputs)
    if sent == expected:
        return
    extra, missing = sorted(sent - expected), sorted(expected - sent)
    raise invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) != "
        f"len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(extra)}}}. "
        f"Missing but required: {{{','.join(missing)}}}."
    )


def check_inputs(signature, inputs):
    """Names, dtypes, shapes and the shared batch dimension of `inputs` ({name: ndarray}) against `signature`."""
    check_input_names(signature, inputs)
    for name, array in sorted(inputs.items()):
        check_dtype(name, array, signature.inputs[name])
        check_shape(name, array, signature.inputs[name])
    check_batch_dimension(signature, inputs)


def check_dtype(name, array, tensor_info):
    expected = tf.dtypes.as_dtype(tensor_info.dtype)
    actual = tf.string if array.dtype == object or array.dtype.kind in "SU" else tf.dtypes.as_dtype(array.dtype)
    if actual != expected:
        raise invalid_argument(
            f"input '{name}' has dtype {actual.name}, the signature expects {dtype_name(tensor_info.dtype)}"
        )


def check_shape(name, array, tensor_info):
    expected = signature_shape(tensor_info)
    if expected is None:
        return
    fits = array.ndim == len(expected) and all(
        want in (-1, got) for want, got in zip(expected, array.shape, strict=True)
    )
    if not fits:
        hint = " (a scalar)" if not expected else ""
        raise invalid_argument(
            f"input '{name}' has shape {format_shape(array.shape)}, the signature expects "
            f"{format_shape(expected)}{hint}"
        )


def check_batch_dimension(signature, inputs):
    """Inputs whose dimension 0 is open (-1) form one batch and must agree on its size.

    TF Serving's batching refuses requests whose inputs differ in dimension 0; the same rule here keeps a request
    that the local server takes from failing on a batching TF Serving.
    """
    sizes = {}
    for name, array in sorted(inputs.items()):
        shape = signature_shape(signature.inputs[name])
        if shape and shape[0] == -1:
            sizes[name] = array.shape[0]
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name} has {size}" for name, size in sizes.items())
        raise invalid_argument(f"inputs disagree on the batch dimension (dimension 0): {listing}")


def as_feed(array, tensor_info):
    """The array in the exact numpy dtype the placeholder takes (strings as an object array of bytes)."""
    if tensor_info.dtype == tf.string.as_datatype_enum:
        return np.asarray(array, dtype=object)
    return np.asarray(array, dtype=tf.dtypes.as_dtype(tensor_info.dtype).as_numpy_dtype)
