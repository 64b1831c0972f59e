"""Fakes for the client tests: a transport that records calls, a scripted TF Serving REST port, small helpers.

A module of its own (not conftest.py) so that tests import it by a name no other test folder uses.
"""

import io
import socket

import numpy as np
from PIL import Image

from sd_client import contract
from sd_client.errors import NotFound
from sd_client.transports.base import VersionStatus

SIZE = 128  # pixels; latent 16 x 16
# What the fake's `provenance` signature answers.
PROVENANCE = {"precision": "bfloat16", "source_format": "ldm_safetensors", "source_sha256": "0123456789abcdef" * 4}


def solid_png(value, size=SIZE):
    image = Image.new("RGB", (size, size), (int(value) % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class FakeTransport:
    """Stands in for a server: records every call; the outputs carry the inputs so tests can follow them.

    text_encoder: context = first token id of the row, unconditional = 2nd token id; diffusion_model: latent filled
    with seed (or initial_latent + 1); decoder png: a solid PNG whose red value is the latent's first value mod 256.
    """

    def __init__(self, served=(*contract.SPLIT_MODELS,)):
        self.served = set(served)
        self.latest = {}  # model -> its latest version (default 3)
        self.calls = []

    def close(self):
        self.calls.append(("close",))

    def model_status(self, model, *, version=None, label=None):
        self.calls.append(("status", model, version, label))
        if model not in self.served:
            raise NotFound(f"Servable not found for request: Latest({model})")
        return [VersionStatus(version or self.latest.get(model, 3), "AVAILABLE")]

    def signatures(self, model, *, version=None, label=None):
        return contract.SIGNATURES[model]

    def predict(self, model, signature, inputs, *, version=None, label=None):
        self.calls.append(("predict", model, signature, inputs, version, label))
        if model not in self.served:
            raise NotFound(f"Servable not found for request: Latest({model})")
        if signature == contract.PROVENANCE_SIGNATURE:
            return {"value": np.array([PROVENANCE[k.decode()].encode() for k in inputs["key"]], dtype=object)}
        if model == contract.TEXT_ENCODER:
            shape = (len(inputs["tokens"]), contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM)
            return {
                "context": np.broadcast_to(inputs["tokens"][:, 1, None, None], shape).astype(np.float32),
                "unconditional_context": np.broadcast_to(inputs["negative_tokens"][:, 1, None, None], shape)
                .astype(np.float32),
            }
        if model == contract.DIFFUSION_MODEL:
            shape = (len(inputs["context"]), SIZE // 8, SIZE // 8, contract.LATENT_CHANNELS)
            if "seed" in inputs:
                return {"latent": np.broadcast_to(inputs["seed"][:, None, None, None], shape).astype(np.float32)}
            return {"latent": inputs["initial_latent"] + 1}
        if model == contract.DECODER:
            values = inputs["latent"][:, 0, 0, 0]
            if signature == contract.PNG_SIGNATURE:
                return {"images_bytes": np.array([solid_png(v) for v in values], dtype=object)}
            return {"images": np.zeros((len(values), SIZE, SIZE, 3), np.uint8)}
        if model == contract.TEXT_TO_IMAGE:
            return {"images_bytes": np.array([solid_png(s) for s in inputs["seed"]], dtype=object)}
        raise AssertionError(model)

    def predictions(self):
        """The generation requests (the provenance lookups generate() makes for the PNG metadata left out)."""
        return [c for c in self.calls if c[0] == "predict" and c[2] != contract.PROVENANCE_SIGNATURE]


class FakeRestServer:
    """A stand-in for TF Serving's REST port on 127.0.0.1: answers from a script, records every request.

    `answers` is a list of (status, json_body or bytes, delay_seconds); the last one repeats."""

    def __init__(self):
        import http.server
        import json
        import threading
        import time

        outer = self
        self.requests = []
        self.answers = [(200, {"outputs": {}}, 0)]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, json.loads(body) if body else None))
                index = min(len(outer.requests), len(outer.answers)) - 1
                status, payload, delay = outer.answers[index]
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up (deadline tests) breaks the pipe: expected, not worth a traceback

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
