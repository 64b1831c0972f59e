"""REST JSON encoding details from TF Serving's json_tensor.cc, checked without a server."""

import json

import numpy as np
import pytest
import tensorflow as tf

from sd_serving.errors import ServingError
from sd_serving.json_tensor import Form, outputs_to_json, value_to_array


def encode(outputs, form=Form.COLUMNAR):
    return outputs_to_json(outputs, form).decode()


def test_float32_is_written_in_its_shortest_round_trip_form():
    values = np.array([0.1, 1.0, 1e-5, 3.4028235e38, 16777216.0, -2.5], np.float32)
    text = encode({"x": values})
    assert text == '{"outputs":[0.1,1.0,1e-05,3.4028235e+38,16777216.0,-2.5]}'
    assert np.array_equal(np.array(json.loads(text)["outputs"], np.float32), values)


def test_non_finite_floats_use_tf_servings_tokens():
    assert encode({"x": np.array([np.nan, np.inf, -np.inf], np.float32)}) == '{"outputs":[NaN,Infinity,-Infinity]}'


def test_integers_and_several_outputs():
    text = encode({"images": np.array([[0, 255]], np.uint8), "count": np.int32(7)})
    assert json.loads(text) == {"outputs": {"images": [[0, 255]], "count": 7}}


def test_bytes_suffix_means_b64_other_strings_are_text():
    text = encode({"images_bytes": np.array([b"\x89PNG"], object), "label": np.array([b"cat"], object)}, Form.ROW)
    assert json.loads(text) == {"predictions": [{"images_bytes": {"b64": "iVBORw=="}, "label": "cat"}]}


def test_row_form_needs_one_batch_size():
    with pytest.raises(ServingError, match="inconsistent batch size: 3 expecting: 2"):
        encode({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}, Form.ROW)


@pytest.mark.parametrize(
    "value,dtype,expected",
    [
        ([1, 2], tf.float32, np.array([1, 2], np.float32)),  # integers are numbers for floats
        ([[1.5]], tf.float64, np.array([[1.5]])),
        (255, tf.uint8, np.uint8(255)),
        ([True, False], tf.bool, np.array([True, False])),
        ([["a", {"b64": "YQ=="}]], tf.string, np.array([[b"a", b"a"]], object)),
        ([], tf.int32, np.zeros([0], np.int32)),
    ],
)
def test_json_values_become_tensors(value, dtype, expected):
    array = value_to_array(value, dtype.as_datatype_enum, "x")
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert np.array_equal(array, expected)


@pytest.mark.parametrize(
    "value,dtype,message",
    [
        (256, tf.uint8, "outside the range of uint8"),
        (1.0, tf.int32, "JSON Value: 1.0 Type: Number is not of expected type: int32"),
        ([1, "2"], tf.float32, 'JSON Value: "2" Type: String is not a number'),
        ([[1], 2], tf.float32, "rectangular"),
        ([["a"], "b"], tf.string, "found at incorrect level"),
        ([["a"], ["b", "c"]], tf.string, "Encountered list at unexpected size: 2 at level: 1 expected size: 1"),
        ([1], tf.bool, "is not of expected type: bool"),
        ([1.0], tf.float16, "Conversion of JSON Value: [1.0] to type: float16"),
        ([2**70], tf.int64, "too large"),
    ],
)
def test_json_values_that_do_not_fit(value, dtype, message):
    with pytest.raises(ServingError) as caught:
        value_to_array(value, dtype.as_datatype_enum, "x")
    assert message in caught.value.message
