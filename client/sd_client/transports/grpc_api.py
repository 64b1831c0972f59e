"""TF Serving's gRPC API with the client's own copies of its messages (sd_client/proto), no TensorFlow.

The method paths are TF Serving's (/tensorflow.serving.PredictionService/Predict ...), called through
channel.unary_unary: the client's message classes live in another proto package, and gRPC never sends the message
type, only the path and the bytes. Retries: gRPC's own retry policy, on UNAVAILABLE only (connection refused while
the server starts, a model not loaded yet). A `dns:///HOST:PORT` target (balanced=True) uses gRPC's round_robin
policy: one connection per address the name resolves to, requests spread over them, and a retry after UNAVAILABLE
picks again, so it lands on another replica.
"""

import json

import grpc

from .. import errors
from ..proto import tf_core_pb2
from ..proto import tf_serving_apis_pb2 as apis
from .base import DTYPE_BY_TF_NAME, VersionStatus, describe_signature, shape_from_dims
from .tensors import from_tensor_proto, to_tensor_proto

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
SIGNATURE_DEF_MAP_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"

# A batch of 8 contexts is 2 x 8 x 77 x 768 float32 = 3.8 MB, 8 PNGs at 512² several MB: gRPC's 4 MB default would
# refuse them. TF Serving itself accepts up to INT32_MAX.
MESSAGE_LIMIT = 256 * 1024 * 1024
_MAX_ATTEMPTS = 5  # gRPC caps a retry policy's maxAttempts at 5
# gRPC waits up to 120 s by default before reconnecting to an address that refused: a restarted replica would sit
# idle that long. 5 s brings it back soon after it listens again.
MAX_RECONNECT_BACKOFF_MS = 5000


def retry_service_config(retries, backoff=0.5, balanced=False):
    """gRPC service config: retry UNAVAILABLE with exponential backoff on TF Serving's two services; with balanced,
    round_robin over every resolved address (gRPC's default, pick_first, would send everything to one)."""
    config = {"loadBalancingConfig": [{"round_robin": {}}]} if balanced else {}
    if retries <= 0:
        return config
    policy = {
        "maxAttempts": min(retries + 1, _MAX_ATTEMPTS),
        "initialBackoff": f"{backoff}s",
        "maxBackoff": "10s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    services = [{"service": "tensorflow.serving.PredictionService"}, {"service": "tensorflow.serving.ModelService"}]
    return dict(config, methodConfig=[{"name": services, "retryPolicy": policy}])


class GrpcTransport:
    def __init__(self, target, *, secure=False, timeout=600.0, retries=3, root_certificates=None, balanced=False):
        self.target = target
        self.timeout = timeout
        options = [
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.enable_retries", 1 if retries > 0 else 0),
            ("grpc.service_config", json.dumps(retry_service_config(retries, balanced=balanced))),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ]
        if secure:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._predict = self._method(PREDICT, apis.PredictResponse)
        self._metadata = self._method(GET_MODEL_METADATA, apis.GetModelMetadataResponse)
        self._status = self._method(GET_MODEL_STATUS, apis.GetModelStatusResponse)

    def __repr__(self):
        return f"GrpcTransport({self.target!r})"

    def _method(self, path, response_class):
        return self._channel.unary_unary(
            path,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )

    def close(self):
        self._channel.close()

    def predict(self, model, signature, inputs, *, version=None, label=None):
        request = apis.PredictRequest(model_spec=model_spec(model, version, label, signature))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(to_tensor_proto(value))
        response = self._call(self._predict, request, model)
        return {name: from_tensor_proto(tensor) for name, tensor in response.outputs.items()}

    def model_status(self, model, *, version=None, label=None):
        request = apis.GetModelStatusRequest(model_spec=model_spec(model, version, label))
        response = self._call(self._status, request, model)
        return [
            VersionStatus(
                version=entry.version,
                state=apis.ModelVersionStatus.State.Name(entry.state),
                error_code=apis.Code.Name(entry.status.error_code),
                error_message=entry.status.error_message,
            )
            for entry in response.model_version_status
        ]

    def signatures(self, model, *, version=None, label=None):
        request = apis.GetModelMetadataRequest(
            model_spec=model_spec(model, version, label), metadata_field=["signature_def"]
        )
        response = self._call(self._metadata, request, model)
        packed = response.metadata.get("signature_def")
        if packed is None or packed.type_url != SIGNATURE_DEF_MAP_TYPE_URL:
            raise errors.Internal(f"the metadata of {model} holds no {SIGNATURE_DEF_MAP_TYPE_URL}", model=model)
        # Any.Unpack would compare the type URL with this class's full name (sd_client.tensorflow...): parse the bytes.
        signature_map = apis.SignatureDefMap.FromString(packed.value)
        return {name: _describe(sig) for name, sig in signature_map.signature_def.items()}

    def _call(self, method, request, model):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _error_from_rpc(e, self.target, self.timeout, model) from None


def model_spec(model, version=None, label=None, signature=""):
    spec = apis.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    return spec


def _error_from_rpc(error, target, timeout, model):
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer from {target} within {timeout:g} s ({details})"
    elif code == grpc.StatusCode.UNAVAILABLE:
        details = f"{target}: {details}"
    return errors.from_code(code.name, details, model=model)


def _describe(signature_def):
    def tensors(infos):
        return {
            name: (
                DTYPE_BY_TF_NAME.get(tf_core_pb2.DataType.Name(info.dtype), tf_core_pb2.DataType.Name(info.dtype)),
                shape_from_dims(d.size for d in info.tensor_shape.dim),
            )
            for name, info in infos.items()
        }

    return describe_signature(tensors(signature_def.inputs), tensors(signature_def.outputs), signature_def.method_name)
