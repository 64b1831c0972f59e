"""What every transport offers, and the pieces they share (dtype names, version statuses, signature descriptions).

A transport runs one signature of one model: `predict(model, signature, inputs, version=, label=)` takes and returns
{name: numpy array}. Scalars are 0-d arrays, strings are object arrays of bytes. Errors are sd_client.errors classes.
"""

import dataclasses

import numpy as np

from .. import contract

# contract dtype name -> (numpy dtype, TensorFlow DataType name). Strings travel as object arrays of bytes.
DTYPES = {
    "float32": (np.dtype("<f4"), "DT_FLOAT"),
    "float64": (np.dtype("<f8"), "DT_DOUBLE"),
    "int32": (np.dtype("<i4"), "DT_INT32"),
    "int64": (np.dtype("<i8"), "DT_INT64"),
    "int16": (np.dtype("<i2"), "DT_INT16"),
    "int8": (np.dtype("i1"), "DT_INT8"),
    "uint8": (np.dtype("u1"), "DT_UINT8"),
    "bool": (np.dtype("?"), "DT_BOOL"),
    "string": (np.dtype(object), "DT_STRING"),
}
DTYPE_BY_TF_NAME = {tf_name: name for name, (_, tf_name) in DTYPES.items()}

STATES = ("UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END")  # TF Serving's ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One entry of TF Serving's model_version_status."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    @property
    def available(self):
        return self.state == "AVAILABLE"


def contract_dtype(model, signature, name, direction):
    """The contract's dtype name of an input or output, or None for a model/signature the contract does not know."""
    tensors = contract.SIGNATURES.get(model, {}).get(signature, {}).get(direction, {})
    spec = tensors.get(name)
    return spec[0] if spec else None


def dtype_name_of(array):
    """The contract dtype name of a numpy array (object and bytes/str arrays are strings)."""
    if array.dtype.kind in "OSU":
        return "string"
    for name, (np_dtype, _) in DTYPES.items():
        if array.dtype == np_dtype:
            return name
    raise TypeError(f"unsupported dtype {array.dtype}")


def as_bytes_array(array):
    """A string tensor as an object array of bytes (str elements UTF-8 encoded)."""
    array = np.asarray(array, dtype=object)
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def shape_from_dims(sizes):
    """A signature shape: -1 (unknown) becomes None."""
    return tuple(None if int(size) < 0 else int(size) for size in sizes)


def describe_signature(inputs, outputs, method_name=""):
    """{"inputs": {name: (dtype, shape)}, "outputs": ..., "method_name": str}, shapes None where unknown."""
    return {"inputs": dict(inputs), "outputs": dict(outputs), "method_name": method_name}
