"""numpy arrays <-> TensorProto (the client's wire-compatible copy in sd_client.proto.tf_core_pb2).

Numbers go out as tensor_content (raw little-endian bytes: no per-value encoding for megabytes of contexts). Answers
are read from tensor_content or from the typed field TF Serving fills by default (float_val, int_val ...).
"""

import numpy as np

from ..proto import tf_core_pb2
from .base import DTYPE_BY_TF_NAME, DTYPES, as_bytes_array, dtype_name_of

# DataType -> the typed repeated field holding its values when tensor_content is empty (tensor.proto's comments)
_TYPED_FIELD = {
    "float32": "float_val",
    "float64": "double_val",
    "int32": "int_val",
    "int16": "int_val",
    "int8": "int_val",
    "uint8": "int_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "string": "string_val",
}


def to_tensor_proto(array):
    array = np.asarray(array)
    name = dtype_name_of(array)
    proto = tf_core_pb2.TensorProto(dtype=tf_core_pb2.DataType.Value(DTYPES[name][1]))
    proto.tensor_shape.dim.extend(tf_core_pb2.TensorShapeProto.Dim(size=size) for size in array.shape)
    if name == "string":
        proto.string_val.extend(as_bytes_array(array).reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(array, dtype=DTYPES[name][0]).tobytes()
    return proto


def from_tensor_proto(proto):
    tf_name = tf_core_pb2.DataType.Name(proto.dtype)
    name = DTYPE_BY_TF_NAME.get(tf_name)
    if name is None:
        raise TypeError(f"unsupported tensor dtype {tf_name}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if name != "string" and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=DTYPES[name][0]).reshape(shape).copy()
    values = list(getattr(proto, _TYPED_FIELD[name]))
    if 0 < len(values) < count:  # TensorFlow's compact form: the last value repeats to fill the shape
        values += [values[-1]] * (count - len(values))
    if name == "string":
        out = np.empty(count, dtype=object)
        out[:] = values
        return out.reshape(shape)
    return np.asarray(values, dtype=DTYPES[name][0]).reshape(shape)
