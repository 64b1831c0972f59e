"""TF Serving's REST API (g3doc/api_rest.md, model_servers/http_rest_api_handler.cc) as a werkzeug WSGI app.

  POST /v1/models/NAME[/versions/N | /labels/L]:predict
  GET  /v1/models/NAME[/versions/N | /labels/L]            model status
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs

Every error is {"error": message} with TF Serving's status -> HTTP mapping; a path under /v1/ that matches no route
is "Malformed request" (400), as in TF Serving.
"""

import json
import logging

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from sd_serving import json_tensor
from sd_serving.core import SIGNATURE_DEF_FIELD
from sd_serving.errors import ServingError, invalid_argument
from sd_serving.servable import DEFAULT_SIGNATURE

log = logging.getLogger(__name__)

API_PREFIX = "/v1/"


class SegmentConverter(BaseConverter):
    """A model name or label: one path segment without ':' (so ':predict' stays outside it), as TF Serving's regex."""

    regex = "[^/:]+"


def _model_rules(suffix, endpoint, methods):
    """The same route for the latest version, /versions/N and /labels/L."""
    return [
        Rule(f"/v1/models/<segment:name>{suffix}", endpoint=endpoint, methods=methods),
        Rule(f"/v1/models/<segment:name>/versions/<int:version>{suffix}", endpoint=endpoint, methods=methods),
        Rule(f"/v1/models/<segment:name>/labels/<segment:label>{suffix}", endpoint=endpoint, methods=methods),
    ]


URL_MAP = Map(
    _model_rules(":<any(predict, classify, regress):method>", "predict", ["POST"])
    + _model_rules("/metadata", "metadata", ["GET"])
    + _model_rules("", "status", ["GET"])
    + [Rule("/v1/models", endpoint="no_model", methods=["GET"])],
    converters={"segment": SegmentConverter},
    strict_slashes=False,
    merge_slashes=False,
)


class RestApp:
    """The WSGI application; `registry` is a core.ModelRegistry, `timeout_ms` the session-run timeout (0 = none)."""

    def __init__(self, registry, timeout_ms):
        self.registry = registry
        self.timeout_ms = timeout_ms

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request):
        try:
            return self.dispatch(request)
        except ServingError as error:
            if error.http_status >= 500:
                log.warning("%s %s: %s", request.method, request.path, error.message)
            return error_response(error.http_status, error.message)
        except Exception:  # a bug here must not take the server down: answer 500 and keep serving
            log.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(500, f"Internal error while processing {request.method} {request.path}")

    def dispatch(self, request):
        adapter = URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException:
            if request.path.startswith(API_PREFIX):
                raise invalid_argument(f"Malformed request: {request.method} {request.path}") from None
            return error_response(404, f"Not found: {request.path} (the API lives under {API_PREFIX})")
        return getattr(self, endpoint)(request, **args)

    def no_model(self, request):
        raise invalid_argument("Missing model name in request.")

    def status(self, request, name, version=None, label=None):
        response = self.registry.status(name, version, label)
        return json_response(json_format.MessageToJson(response, always_print_fields_with_no_presence=True))

    def metadata(self, request, name, version=None, label=None):
        response = self.registry.metadata(name, version, label)
        signature_map = response.metadata[SIGNATURE_DEF_FIELD]
        body = {
            "model_spec": _message_dict(response.model_spec),
            "metadata": {SIGNATURE_DEF_FIELD: _message_dict(_unpack_signature_map(signature_map))},
        }
        return json_response(json.dumps(body, indent=1))

    def predict(self, request, name, method, version=None, label=None):
        if method != "predict":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"The local server does not implement :{method}")
        resolved = []

        def input_infos(signature_name):
            # Called once the JSON parsed: TF Serving reports a malformed body before an unknown model.
            loaded = self.registry.resolve(name, version, label)
            resolved.append(loaded)
            if (signature_name or DEFAULT_SIGNATURE) not in loaded.signatures:
                raise invalid_argument(
                    f'Serving signature name: "{signature_name or DEFAULT_SIGNATURE}" not found in signature def '
                    f"(this version has: {', '.join(loaded.runnable_signatures())})"
                )
            return loaded.signature(signature_name).inputs

        signature_name, form, inputs = json_tensor.parse_request(request.get_data(), input_infos)
        outputs = resolved[0].run(signature_name, inputs, timeout_ms=self.timeout_ms)
        return Response(json_tensor.outputs_to_json(outputs, form), status=200, content_type="application/json")


def _message_dict(message):
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _unpack_signature_map(any_message):
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    any_message.Unpack(signature_map)
    return signature_map


def json_response(text, status=200):
    return Response(text, status=status, content_type="application/json")


def error_response(status, message):
    return json_response(json.dumps({"error": message}), status)
