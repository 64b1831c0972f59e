"""The client's TF Serving protos are wire-compatible with tensorflow-serving-api's: same fields, and bytes written by
one are read by the other, both ways. Both sets load in this one process: the client's live in another proto
package (sd_client.tensorflow...), so no full name collides.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from google.protobuf import descriptor_pool, text_format  # noqa: E402
from tensorflow.core.framework import tensor_pb2 as official_tensor_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from sd_client.proto import tf_core_pb2, tf_serving_apis_pb2, tf_serving_config_pb2  # noqa: E402
from sd_client.transports import grpc_api  # noqa: E402
from sd_client.transports.tensors import from_tensor_proto, to_tensor_proto  # noqa: E402

# The client's full names -> the official ones where the rule "drop the sd_client. prefix" does not hold.
_RENAMED = {
    "sd_client.tensorflow.serving.Code": "tensorflow.error.Code",
    "sd_client.tensorflow.serving.ServableVersionPolicy":
        "tensorflow.serving.FileSystemStoragePathSourceConfig.ServableVersionPolicy",
}


def _official_name(client_full_name):
    for mine, theirs in _RENAMED.items():
        if client_full_name == mine or client_full_name.startswith(mine + "."):
            return theirs + client_full_name[len(mine) :]
    assert client_full_name.startswith("sd_client."), client_full_name
    return client_full_name[len("sd_client.") :]


def _all_messages():
    for module in (tf_core_pb2, tf_serving_apis_pb2, tf_serving_config_pb2):
        stack = list(module.DESCRIPTOR.message_types_by_name.values())
        while stack:
            message = stack.pop()
            stack.extend(message.nested_types)
            yield message


def _all_enums():
    for module in (tf_core_pb2, tf_serving_apis_pb2, tf_serving_config_pb2):
        yield from module.DESCRIPTOR.enum_types_by_name.values()
        for message in _all_messages():
            yield from message.enum_types


@pytest.mark.parametrize("message", list(_all_messages()), ids=lambda m: m.full_name)
def test_every_field_matches_the_official_field(message):
    official = descriptor_pool.Default().FindMessageTypeByName(_official_name(message.full_name))
    for field in message.fields:
        theirs = official.fields_by_number.get(field.number)
        assert theirs is not None, f"{official.full_name} has no field {field.number}"
        assert (field.name, field.type, field.is_repeated) == (theirs.name, theirs.type, theirs.is_repeated)
        assert field.is_packed == theirs.is_packed, field.full_name
        if field.message_type is not None:
            name = field.message_type.full_name
            expected = name if name.startswith("google.protobuf.") else _official_name(name)
            assert expected == theirs.message_type.full_name
        if field.enum_type is not None:
            assert _official_name(field.enum_type.full_name) == theirs.enum_type.full_name
        if field.containing_oneof is not None:
            assert theirs.containing_oneof is not None and field.containing_oneof.name == theirs.containing_oneof.name


@pytest.mark.parametrize("enum", list(_all_enums()), ids=lambda e: e.full_name)
def test_every_enum_value_matches_the_official_value(enum):
    official = descriptor_pool.Default().FindEnumTypeByName(_official_name(enum.full_name))
    for value in enum.values:
        assert official.values_by_name[value.name].number == value.number


def test_method_paths_are_the_official_stubs():
    class RecordingChannel:
        def __init__(self):
            self.paths = []

        def unary_unary(self, path, *args, **kwargs):
            self.paths.append(path)

    channel = RecordingChannel()
    prediction_service_pb2_grpc.PredictionServiceStub(channel)
    model_service_pb2_grpc.ModelServiceStub(channel)
    assert {grpc_api.PREDICT, grpc_api.GET_MODEL_METADATA, grpc_api.GET_MODEL_STATUS} <= set(channel.paths)


def _inputs():
    rng = np.random.default_rng(0)
    return {
        "context": rng.standard_normal((2, 77, 768)).astype(np.float32),
        "num_steps": np.int32(25),
        "guidance_scale": np.float32(7.5),
        "seed": np.array([0, 2147483646], np.int32),
        "tokens": np.array([[49406, 320, 49407]], np.int32),
        "images": rng.integers(0, 256, (1, 4, 4, 3)).astype(np.uint8),
        "prompt": np.array([b"a cat", "東京 🐱".encode()], dtype=object),
    }


@pytest.mark.parametrize("version,label", [(None, None), (7, None), (None, "stock")])
def test_client_predict_request_parses_with_the_official_class(version, label):
    mine = tf_serving_apis_pb2.PredictRequest(model_spec=grpc_api.model_spec("diffusion_model", version, label, "png"))
    for name, value in _inputs().items():
        mine.inputs[name].CopyFrom(to_tensor_proto(value))
    theirs = predict_pb2.PredictRequest.FromString(mine.SerializeToString())
    assert theirs.model_spec.name == "diffusion_model" and theirs.model_spec.signature_name == "png"
    assert theirs.model_spec.WhichOneof("version_choice") == (
        "version" if version is not None else "version_label" if label else None
    )
    if version is not None:
        assert theirs.model_spec.version.value == version
    if label:
        assert theirs.model_spec.version_label == label
    for name, value in _inputs().items():
        decoded = tf.make_ndarray(theirs.inputs[name])  # TensorFlow's own decoding
        expected = np.asarray(value)
        assert decoded.dtype == (np.dtype(object) if expected.dtype == object else expected.dtype)
        assert decoded.shape == expected.shape
        np.testing.assert_array_equal(decoded, expected)


def test_str_elements_travel_as_utf8():
    proto = predict_pb2.PredictRequest.FromString(
        tf_serving_apis_pb2.PredictRequest(inputs={"p": to_tensor_proto(np.array(["東京"], dtype=object))})
        .SerializeToString()
    )
    assert tf.make_ndarray(proto.inputs["p"]).tolist() == ["東京".encode()]


def test_official_predict_response_parses_with_the_client_class():
    arrays = _inputs()
    theirs = predict_pb2.PredictResponse()
    theirs.model_spec.name = "decoder"
    theirs.model_spec.version.value = 3
    for name, value in arrays.items():
        theirs.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    # TF Serving's default: typed fields, not tensor_content
    theirs.outputs["typed_float"].CopyFrom(
        official_tensor_pb2.TensorProto(dtype=1, float_val=[0.5, -1.25], tensor_shape={"dim": [{"size": 2}]})
    )
    theirs.outputs["typed_uint8"].CopyFrom(
        official_tensor_pb2.TensorProto(dtype=4, int_val=[0, 255, 7], tensor_shape={"dim": [{"size": 3}]})
    )
    theirs.outputs["compact"].CopyFrom(  # one value repeated to fill the shape, as TensorFlow writes constants
        official_tensor_pb2.TensorProto(dtype=1, float_val=[2.0], tensor_shape={"dim": [{"size": 2}, {"size": 2}]})
    )
    mine = tf_serving_apis_pb2.PredictResponse.FromString(theirs.SerializeToString())
    assert mine.model_spec.version.value == 3
    for name, value in arrays.items():
        np.testing.assert_array_equal(from_tensor_proto(mine.outputs[name]), value)
        assert from_tensor_proto(mine.outputs[name]).dtype == np.asarray(value).dtype
    np.testing.assert_array_equal(from_tensor_proto(mine.outputs["typed_float"]), np.float32([0.5, -1.25]))
    typed_uint8 = from_tensor_proto(mine.outputs["typed_uint8"])
    assert typed_uint8.dtype == np.uint8 and typed_uint8.tolist() == [0, 255, 7]
    np.testing.assert_array_equal(from_tensor_proto(mine.outputs["compact"]), np.full((2, 2), 2.0, np.float32))


def test_model_status_both_ways():
    theirs = get_model_status_pb2.GetModelStatusResponse()
    entry = theirs.model_version_status.add(version=2, state=get_model_status_pb2.ModelVersionStatus.LOADING)
    entry.status.error_code = 5
    entry.status.error_message = "still loading"
    mine = tf_serving_apis_pb2.GetModelStatusResponse.FromString(theirs.SerializeToString())
    (status,) = mine.model_version_status
    assert (status.version, tf_serving_apis_pb2.ModelVersionStatus.State.Name(status.state)) == (2, "LOADING")
    assert tf_serving_apis_pb2.Code.Name(status.status.error_code) == "NOT_FOUND"
    assert status.status.error_message == "still loading"

    request = tf_serving_apis_pb2.GetModelStatusRequest(model_spec=grpc_api.model_spec("decoder", None, "tuned"))
    parsed = get_model_status_pb2.GetModelStatusRequest.FromString(request.SerializeToString())
    assert (parsed.model_spec.name, parsed.model_spec.version_label) == ("decoder", "tuned")


def test_metadata_any_holds_the_official_signature_def_map():
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["tokens"].name = "serving_default_tokens:0"
    signature.inputs["tokens"].dtype = 3
    signature.inputs["tokens"].tensor_shape.dim.add(size=-1)
    signature.inputs["tokens"].tensor_shape.dim.add(size=77)
    signature.outputs["context"].name = "StatefulPartitionedCall:0"
    signature.outputs["context"].dtype = 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    theirs = get_model_metadata_pb2.GetModelMetadataResponse()
    theirs.model_spec.name = "text_encoder"
    theirs.metadata["signature_def"].Pack(signature_map)

    mine = tf_serving_apis_pb2.GetModelMetadataResponse.FromString(theirs.SerializeToString())
    packed = mine.metadata["signature_def"]
    assert packed.type_url == grpc_api.SIGNATURE_DEF_MAP_TYPE_URL
    described = grpc_api._describe(
        tf_serving_apis_pb2.SignatureDefMap.FromString(packed.value).signature_def["serving_default"]
    )
    assert described["inputs"] == {"tokens": ("int32", (None, 77))}
    assert described["outputs"] == {"context": ("float32", ())}
    assert described["method_name"] == "tensorflow/serving/predict"

    request = tf_serving_apis_pb2.GetModelMetadataRequest(
        model_spec=grpc_api.model_spec("text_encoder", 4), metadata_field=["signature_def"]
    )
    parsed = get_model_metadata_pb2.GetModelMetadataRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.version.value == 4 and list(parsed.metadata_field) == ["signature_def"]


_CONFIG = """
model_config_list {
  config {
    name: 'diffusion_model'
    base_path: '/models/diffusion_model'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: 'stock' value: 1 }
    version_labels { key: 'pokemon' value: 2 }
  }
  config {
    name: 'decoder'
    base_path: '/models/decoder'
    model_platform: 'tensorflow'
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


def test_models_config_text_reads_the_same_with_both_classes():
    theirs = text_format.Parse(_CONFIG, model_server_config_pb2.ModelServerConfig())
    mine = text_format.Parse(_CONFIG, tf_serving_config_pb2.ModelServerConfig())
    assert text_format.MessageToString(mine) == text_format.MessageToString(theirs)
    again = model_server_config_pb2.ModelServerConfig.FromString(mine.SerializeToString())
    assert again == theirs
