"""TF Serving's REST API (g3doc/api_rest.md) over requests.

Predict uses the columnar form ({"signature_name", "inputs"}): the signatures have scalar inputs (num_steps,
guidance_scale), which the row form cannot carry. Retries (urllib3's Retry) only where the request cannot have run:
connection refused / connect errors, and 503 (TF Serving's UNAVAILABLE: the model is not loaded yet).
"""

import base64
import json
import re
import urllib.parse

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import contract, errors
from .base import (
    DTYPE_BY_TF_NAME,
    DTYPES,
    VersionStatus,
    as_bytes_array,
    contract_dtype,
    describe_signature,
    dtype_name_of,
    shape_from_dims,
)

CONNECT_TIMEOUT = 10.0  # seconds to open a connection; the read timeout is the caller's (generations take minutes)


class RestTransport:
    def __init__(self, url, *, timeout=600.0, retries=3, backoff=0.5, ca_file=None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._session = requests.Session()
        # per request: a Session.verify would lose to $REQUESTS_CA_BUNDLE (requests' merge order)
        self._verify = str(ca_file) if ca_file else True
        retry = Retry(
            total=retries,
            connect=retries,
            read=False,  # a read error may come after the server ran the request: not safe to repeat; re-raised
            other=0,
            status=retries,
            status_forcelist=(503,),
            allowed_methods=None,  # POST too: a 503 or a refused connection means nothing ran
            backoff_factor=backoff,
            raise_on_status=False,  # the last 503 comes back as a response and becomes Unavailable
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self):
        return f"RestTransport({self.url!r})"

    def close(self):
        self._session.close()

    def predict(self, model, signature, inputs, *, version=None, label=None):
        body = {
            "signature_name": signature,
            "inputs": {name: _to_json(np.asarray(value)) for name, value in inputs.items()},
        }
        answer = self._call("POST", model_path(model, version, label) + ":predict", model, body)
        if "outputs" not in answer:
            raise errors.Internal(f"the server's answer has no 'outputs': {str(answer)[:200]}", model=model)
        return _decode_outputs(answer["outputs"], model, signature)

    def model_status(self, model, *, version=None, label=None):
        answer = self._call("GET", model_path(model, version, label), model)
        return [
            VersionStatus(
                version=int(entry["version"]),
                state=entry.get("state", "UNKNOWN"),
                error_code=entry.get("status", {}).get("error_code", "OK"),
                error_message=entry.get("status", {}).get("error_message", ""),
            )
            for entry in answer.get("model_version_status", [])
        ]

    def signatures(self, model, *, version=None, label=None):
        answer = self._call("GET", model_path(model, version, label) + "/metadata", model)
        signature_defs = answer.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
        return {name: _signature_from_json(sig) for name, sig in signature_defs.items()}

    def _call(self, method, path, model, body=None):
        url = self.url + path
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        try:
            response = self._session.request(
                method,
                url,
                data=data,
                headers={"Content-Type": "application/json"} if data else None,
                timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout),
                verify=self._verify,
            )
        except requests.exceptions.ReadTimeout as e:
            raise errors.DeadlineExceeded(f"no answer from {url} within {self.timeout:g} s", model=model) from e
        except requests.exceptions.ConnectionError as e:
            raise errors.Unavailable(
                f"cannot connect to {self.url} (tried {self.retries + 1} times): {_root_cause(e)}", model=model
            ) from e
        except requests.exceptions.ChunkedEncodingError as e:
            # The server went away in the middle of its answer (what gRPC reports as UNAVAILABLE too).
            raise errors.Unavailable(f"the connection to {self.url} broke during the answer: {e}", model=model) from e
        except requests.exceptions.RequestException as e:
            raise errors.Unknown(f"{method} {url} failed: {e}", model=model) from e
        return _parse_answer(response, model)


def model_path(model, version=None, label=None):
    """/v1/models/NAME[/versions/N | /labels/L]"""
    path = "/v1/models/" + urllib.parse.quote(model, safe="")
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += "/labels/" + urllib.parse.quote(label, safe="")
    return path


def _parse_answer(response, model):
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not response.ok:
        message = answer.get("error") if isinstance(answer, dict) else None
        raise errors.from_http_status(response.status_code, message or response.text.strip()[:500], model=model)
    if not isinstance(answer, dict):
        raise errors.Internal(f"the server's answer is not a JSON object: {response.text[:200]!r}", model=model)
    return answer


def _root_cause(exception):
    """'Connection refused' out of requests' nested connection error text."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(exception))
    return found[-1].strip() if found else str(exception)


def _to_json(array):
    """An input in TF Serving's JSON: numbers as (nested) lists, strings as text or {"b64"} for bytes."""
    if dtype_name_of(array) == "string":
        return _strings_to_json(array.tolist())
    return array.tolist()


def _strings_to_json(value):
    if isinstance(value, list):
        return [_strings_to_json(v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return str(value)


def _decode_outputs(outputs, model, signature):
    """TF Serving's columnar answer: a bare value when the signature has one output, else an object by name."""
    expected = contract.SIGNATURES.get(model, {}).get(signature, {}).get("outputs")
    if expected and len(expected) == 1:
        (name,) = expected
        outputs = {name: outputs}
    elif not isinstance(outputs, dict):
        raise errors.Internal(f"expected named outputs from {model}/{signature}", model=model)
    return {
        name: _from_json(value, contract_dtype(model, signature, name, "outputs")) for name, value in outputs.items()
    }


def _from_json(value, dtype_name):
    if dtype_name == "string" or _holds_strings(value):
        return as_bytes_array(np.asarray(_strings_from_json(value), dtype=object))
    return np.asarray(value, dtype=DTYPES[dtype_name][0] if dtype_name else None)


def _holds_strings(value):
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _strings_from_json(value):
    if isinstance(value, list):
        return [_strings_from_json(v) for v in value]
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value.encode("utf-8")


def _signature_from_json(signature):
    """A SignatureDef in proto3 JSON (dtype "DT_FLOAT", dim sizes as strings) -> describe_signature form."""

    def tensors(infos):
        return {
            name: (
                DTYPE_BY_TF_NAME.get(info.get("dtype"), info.get("dtype")),
                shape_from_dims(d.get("size", -1) for d in info.get("tensor_shape", {}).get("dim", [])),
            )
            for name, info in infos.items()
        }

    return describe_signature(
        tensors(signature.get("inputs", {})), tensors(signature.get("outputs", {})), signature.get("method_name", "")
    )
