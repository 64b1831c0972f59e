"""TF Serving's gRPC API on the official tensorflow-serving-api service definitions.

PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus; the other methods keep the generated
servicers' UNIMPLEMENTED answer. The client's deadline becomes the session-run timeout, as in TF Serving.
"""

import logging
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from sd_serving import tensors
from sd_serving.core import model_spec
from sd_serving.errors import ServingError
from sd_serving.servable import DEFAULT_SIGNATURE

log = logging.getLogger(__name__)

# TF Serving accepts messages up to INT32_MAX; contexts and images are far above gRPC's 4 MB default.
MAX_MESSAGE_BYTES = 2**31 - 1
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # gRPC sets SO_REUSEPORT by default: a second server on a taken port would share it silently instead of failing.
    ("grpc.so_reuseport", 0),
]


def _serving_errors(method):
    """Turn a ServingError into the RPC's status; any other exception into INTERNAL (the server keeps running)."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception:
            log.exception("unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error in {method.__name__}")

    wrapper.__name__ = method.__name__
    return wrapper


def _version_choice(spec):
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return version, label


def timeout_ms_from(context):
    """The time left before the client's deadline, in ms (None = no deadline); an expired one is refused."""
    remaining = context.time_remaining()
    if remaining is None or remaining > MAX_MESSAGE_BYTES / 1000:  # no deadline (gRPC reports a huge number)
        return None
    if remaining <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    return max(1, int(remaining * 1000))


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    @_serving_errors
    def Predict(self, request, context):
        version, label = _version_choice(request.model_spec)
        loaded = self.registry.resolve(request.model_spec.name, version, label)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        inputs = tensors.arrays_from_protos(loaded.signature(signature_name), request.inputs)
        outputs = loaded.run(signature_name, inputs, list(request.output_filter), timeout_ms_from(context))
        response = predict_pb2.PredictResponse(model_spec=model_spec(loaded, signature_name))
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(tensors.proto_from_array(array))
        return response

    @_serving_errors
    def GetModelMetadata(self, request, context):
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        version, label = _version_choice(request.model_spec)
        return self.registry.metadata(request.model_spec.name, version, label, list(request.metadata_field))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    @_serving_errors
    def GetModelStatus(self, request, context):
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        version, label = _version_choice(request.model_spec)
        return self.registry.status(request.model_spec.name, version, label)


def create_server(registry, host, port, max_workers):
    """A started-later grpc.Server bound to host:port; OSError if the port cannot be bound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
