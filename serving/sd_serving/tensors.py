"""TensorProto <-> numpy for gRPC requests, responses and warmup records.

Requests are decoded by TensorFlow's own tf.make_ndarray (tensor_content or typed fields). Responses use the typed
fields (float_val, int_val, string_val ...), which is what tensorflow_model_server sends unless it runs with
--enable_serialization_as_tensor_content, so clients see the same bytes from both servers.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

from sd_serving.errors import invalid_argument
from sd_serving.validation import check_input_names, dtype_name

# numpy dtype -> the TensorProto field TensorFlow's Tensor::AsProtoField fills for it
_TYPED_FIELDS = {
    np.dtype(np.float32): "float_val",
    np.dtype(np.float64): "double_val",
    np.dtype(np.int32): "int_val",
    np.dtype(np.int16): "int_val",
    np.dtype(np.int8): "int_val",
    np.dtype(np.uint8): "int_val",
    np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val",
    np.dtype(np.uint32): "uint32_val",
    np.dtype(np.uint64): "uint64_val",
    np.dtype(np.bool_): "bool_val",
    np.dtype(object): "string_val",
}


def arrays_from_protos(signature, protos):
    """A request's {name: TensorProto} as {name: ndarray}, checked against the signature's names and dtypes."""
    check_input_names(signature, protos)
    return {name: array_from_proto(name, proto, signature.inputs[name].dtype) for name, proto in protos.items()}


def array_from_proto(name, proto, expected_dtype):
    """The request tensor `name` as a numpy array; INVALID_ARGUMENT if its dtype or values do not fit."""
    if proto.dtype != expected_dtype:
        raise invalid_argument(
            f"input '{name}' has dtype {dtype_name(proto.dtype)}, the signature expects {dtype_name(expected_dtype)}"
        )
    _check_value_count(name, proto)
    try:
        array = tf.make_ndarray(proto)
    except Exception as error:  # TensorFlow raises TypeError/ValueError for inconsistent protos
        raise invalid_argument(f"input '{name}' is not a valid TensorProto: {error}") from None
    return np.asarray(array)


def _check_value_count(name, proto):
    """More typed values than the shape holds is an error; fewer are padded with the last one (TensorFlow's rule)."""
    if proto.tensor_content:
        return
    field = _TYPED_FIELDS.get(np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype))
    if field is None:
        return
    elements = int(np.prod([dim.size for dim in proto.tensor_shape.dim], dtype=np.int64))
    count = len(getattr(proto, field))
    if count > elements:
        raise invalid_argument(
            f"input '{name}' has {count} values in {field}, more than its shape "
            f"[{','.join(str(dim.size) for dim in proto.tensor_shape.dim)}] holds ({elements})"
        )


def proto_from_array(array):
    """A TensorProto with typed value fields, like TensorFlow's Tensor::AsProtoField."""
    array = np.asarray(array)
    field = _TYPED_FIELDS.get(array.dtype)
    if field is None:  # half, bfloat16, complex ...: TensorFlow's own encoder
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(
        dtype=tf.dtypes.as_dtype(array.dtype if field != "string_val" else tf.string).as_datatype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
    )
    values = array.ravel()
    if field == "string_val":
        values = [value if isinstance(value, bytes) else str(value).encode() for value in values]
    else:
        values = values.tolist()
    getattr(proto, field).extend(values)
    return proto
