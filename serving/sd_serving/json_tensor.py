"""TF Serving's REST JSON <-> tensors (util/json_tensor.cc, g3doc/api_rest.md), with its error messages.

Request: {"signature_name"?: str, "instances": [...]} (row form: one entry per batch item, stacked on a new dimension
0) or {"signature_name"?: str, "inputs": ...} (columnar form: each input whole). Strings are JSON strings or
{"b64": ...}; integer dtypes take JSON integers only. Response: {"predictions": [...]} for the row form,
{"outputs": ...} for the columnar form; a string output named *_bytes comes back as {"b64": ...}; floats in their
shortest round-trip decimal form.
"""

import base64
import binascii
import enum
import json

import grpc
import numpy as np
import tensorflow as tf

from sd_serving.errors import ServingError, invalid_argument
from sd_serving.validation import format_shape, signature_shape

B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"
_DEBUG_STRING_LIMIT = 100  # characters of a JSON value quoted in a message


class Form(enum.Enum):
    ROW = "instances"
    COLUMNAR = "inputs"


def parse_request(body, input_infos):
    """Body bytes -> (signature_name, Form, {input: ndarray}).

    input_infos(signature_name) returns the signature's {name: TensorInfo}; it is called after the JSON parsed and
    raises for an unknown model or signature, as TF Serving's GetInfoMap does.
    """
    document = parse_json(body)
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    infos = input_infos(signature_name)
    if not infos:
        raise invalid_argument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances, has_inputs = Form.ROW.value in document, Form.COLUMNAR.value in document
    if has_instances and has_inputs:
        raise invalid_argument(
            f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_instances:
        return signature_name, Form.ROW, inputs_from_instances(document[Form.ROW.value], infos)
    if has_inputs:
        return signature_name, Form.COLUMNAR, inputs_from_columns(document[Form.COLUMNAR.value], infos)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def parse_json(body):
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except (UnicodeDecodeError, RecursionError) as error:
        raise invalid_argument(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {debug_string(document)} Is not object")
    return document


def inputs_from_instances(instances, infos):
    """Row form: each instance holds one batch item of every input (an object keyed by name, or a bare value when
    the signature has one input); the items are stacked along a new dimension 0."""
    if not isinstance(instances, list):
        raise invalid_argument(f"JSON Value: {debug_string(instances)} Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("JSON Value: [] No values in 'instances' array")
    for name, info in sorted(infos.items()):
        if signature_shape(info) == []:
            raise invalid_argument(
                f"input '{name}' is a scalar (shape []): scalars can only be sent in the columnar form ('inputs'), "
                "not in 'instances'"
            )
    as_objects = _is_named_object(instances[0])
    if not as_objects and len(infos) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    items = {name: [] for name in infos}
    for index, instance in enumerate(instances):
        if as_objects:
            _check_instance_object(index, instance, infos)
            values = instance
        elif _is_named_object(instance):
            raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
        else:
            values = {next(iter(infos)): instance}
        for name, value in values.items():
            items[name].append(_instance_item(index, name, value, infos[name], items[name]))
    return {name: np.stack(arrays) for name, arrays in items.items()}


def _check_instance_object(index, instance, infos):
    if not _is_named_object(instance):
        raise invalid_argument(f"Expecting object but got list at item {index} of input list")
    for key in instance:
        if key not in infos:
            raise invalid_argument(
                f"Failed to process element: {index} key: {key} of 'instances' list. Error: JSON object: does not "
                f"have named input: {key} (the signature's inputs: {','.join(sorted(infos))})"
            )
    if set(instance) != set(infos):
        raise invalid_argument(
            f"Failed to process element: {index} of 'instances' list. JSON object: {debug_string(instance)} keys "
            f"must be equal to: {','.join(sorted(infos))}"
        )


def _instance_item(index, name, value, info, previous):
    try:
        array = value_to_array(value, info.dtype, name)
    except ServingError as error:
        raise ServingError(
            error.code, f"Failed to process element: {index} key: {name} of 'instances' list. Error: {error.message}"
        ) from None
    if previous and previous[0].shape != array.shape:
        raise invalid_argument(
            f"Failed to process element: {index} key: {name} of 'instances' list. Error: Expecting shape "
            f"{format_shape(previous[0].shape)} but got: {format_shape(array.shape)}"
        )
    return array


def inputs_from_columns(columns, infos):
    """Columnar form: an object with every input, or a bare value/list when the signature has one input."""
    if not _is_named_object(columns):
        if len(infos) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        name = next(iter(infos))
        return {name: value_to_array(columns, infos[name].dtype, name)}
    for name in sorted(infos):
        if name not in columns:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
    for key in columns:
        if key not in infos:
            raise invalid_argument(
                f"Unknown named input: {key} in 'inputs' object (the signature's inputs: {','.join(sorted(infos))})"
            )
    return {name: value_to_array(columns[name], infos[name].dtype, name) for name in infos}


def value_to_array(value, dtype_enum, name):
    """A JSON value (scalar or nested lists) as an array of the signature's dtype; INVALID_ARGUMENT otherwise."""
    dtype = tf.dtypes.as_dtype(dtype_enum)
    if dtype == tf.string:
        return _string_array(value, name)
    if (dtype.is_floating and dtype not in (tf.float32, tf.float64)) or dtype.is_complex or dtype.is_quantized:
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(value)} to type: {dtype.name}"
        )
    array = _numeric_array(value, name)
    if dtype == tf.bool:
        if array.dtype != np.bool_ and array.size:
            raise _type_error(_first_leaf(value, lambda leaf: not isinstance(leaf, bool), value), dtype)
        return array.astype(np.bool_)
    if array.dtype == np.bool_ and array.size:
        raise _type_error(_first_leaf(value, lambda leaf: isinstance(leaf, bool), value), dtype)
    if dtype.is_integer:
        if array.dtype.kind not in "iu" and array.size:
            raise _type_error(_first_leaf(value, lambda leaf: not isinstance(leaf, int), value), dtype)
        if array.size and (array.min() < dtype.min or array.max() > dtype.max):
            raise invalid_argument(
                f"input '{name}': values outside the range of {dtype.name} [{dtype.min}, {dtype.max}]"
            )
    return array.astype(dtype.as_numpy_dtype)


def _numeric_array(value, name):
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        raise invalid_argument(
            f"input '{name}': lists of different lengths at the same level (a tensor must be rectangular)"
        ) from None
    if array.dtype.kind not in "biuf":
        bad = _first_leaf(value, lambda leaf: isinstance(leaf, bool) or not isinstance(leaf, (int, float)))
        if bad is _NOT_FOUND:  # every leaf is a number: an integer beyond 64 bits
            raise invalid_argument(f"input '{name}': an integer too large for any tensor dtype")
        raise invalid_argument(
            f"JSON Value: {debug_string(bad)} Type: {json_type(bad)} is not a number (input '{name}')"
        )
    return array


def _string_array(value, name):
    shape = _dense_shape(value)
    flat = []
    _fill_strings(value, 0, shape, flat, name)
    return np.array(flat, dtype=object).reshape(shape)


def _dense_shape(value):
    """The shape implied by the first element at every level (as TF Serving's GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill_strings(value, level, shape, flat, name):
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid_argument(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)} (input '{name}')"
            )
        flat.append(_string_leaf(value))
        return
    if level >= len(shape):
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {len(shape)} (input '{name}')"
        )
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]} "
            f"(input '{name}')"
        )
    for item in value:
        _fill_strings(item, level + 1, shape, flat, name)


def _string_leaf(value):
    if isinstance(value, str):
        return value.encode()
    if _is_b64_object(value):
        try:
            return base64.b64decode(value[B64_KEY], validate=True)
        except (binascii.Error, ValueError):
            raise invalid_argument("Unable to base64 decode") from None
    if isinstance(value, dict):
        raise invalid_argument(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    raise _type_error(value, tf.string)


def outputs_to_json(outputs, form):
    """{"predictions": [...]} (row form) or {"outputs": ...} (columnar form), as bytes."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    values = {name: _json_values(name, array) for name, array in outputs.items()}
    if form is Form.ROW:
        body = {"predictions": _rows(outputs, values)}
    elif len(values) == 1:
        body = {"outputs": next(iter(values.values()))}
    else:
        body = {"outputs": values}
    return json.dumps(body, separators=(",", ":")).encode()


def _rows(outputs, values):
    batch_size = None
    for name, array in sorted(outputs.items()):
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and array.shape[0] != batch_size:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch_size}"
            )
        batch_size = array.shape[0]
    if len(values) == 1:
        return next(iter(values.values()))
    return [{name: rows[index] for name, rows in values.items()} for index in range(batch_size)]


def _json_values(name, array):
    """Nested lists of JSON-ready values for one output tensor."""
    if array.dtype == object or array.dtype.kind == "S":
        if name.endswith(BYTES_SUFFIX):
            encode = np.frompyfunc(lambda value: {B64_KEY: base64.b64encode(value).decode("ascii")}, 1, 1)
        else:
            encode = np.frompyfunc(lambda value: value.decode("utf-8", errors="replace"), 1, 1)
        encoded = encode(array)
        return encoded.tolist() if isinstance(encoded, np.ndarray) else encoded
    if array.dtype.kind == "f" and array.dtype != np.float64:
        # The float32 value's shortest decimal form, parsed as a double: json writes it back in that short form.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _is_b64_object(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64_KEY), str)


def _is_named_object(value):
    return isinstance(value, dict) and not _is_b64_object(value)


_NOT_FOUND = object()


def _first_leaf(value, predicate, default=_NOT_FOUND):
    """The first scalar in nested lists for which predicate holds (for the message), else `default`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif predicate(item):
            return item
    return default


def _type_error(value, dtype):
    return invalid_argument(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} is not of expected type: {dtype.name}"
    )


def json_type(value):
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object", type(None): "Null"}.get(type(value), type(value).__name__)


def debug_string(value):
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= _DEBUG_STRING_LIMIT else text[:_DEBUG_STRING_LIMIT] + "..."
