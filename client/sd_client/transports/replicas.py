"""Several servers: requests spread round-robin over replicas, failover on a lost replica, per-model routing.

    ReplicatedTransport([grpc_a, grpc_b])       # every request to the next replica; UNAVAILABLE -> the one after
    RoutedTransport({"text_encoder": cpu_pods, "diffusion_model": gpu_pods, "decoder": cpu_pods})

A replica that cannot take a request (connection refused or reset, gRPC UNAVAILABLE, HTTP 503) raises Unavailable;
the request then goes to the next replica. Repeating a request is safe: every signature is a pure function of its
inputs (the seed fixes the noise), so the image is the same whichever replica draws it. Each replica's own transport
runs without library retries here, so a dead replica costs one refused connection, not a backoff; when every replica
refused, the whole round is tried again after a backoff, `retries` times.
"""

import collections
import itertools
import threading
import time

from .. import errors

BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0


class ReplicatedTransport:
    """Equivalent replicas of one server (same models, versions, labels), used in turn."""

    def __init__(self, transports, *, retries=3, backoff=BACKOFF_SECONDS):
        if not transports:
            raise errors.ValidationError("no endpoint given")
        self.transports = list(transports)
        self.retries = retries
        self.backoff = backoff
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.answered = collections.Counter()  # endpoint -> requests it answered (each replica's share of the work)
        self.failovers = collections.Counter()  # endpoint -> requests it could not take

    def __repr__(self):
        return f"ReplicatedTransport({self.transports!r})"

    def close(self):
        for transport in self.transports:
            transport.close()

    def predict(self, model, signature, inputs, *, version=None, label=None):
        return self._call("predict", model, signature, inputs, version=version, label=label)

    def model_status(self, model, *, version=None, label=None):
        return self._call("model_status", model, version=version, label=label)

    def signatures(self, model, *, version=None, label=None):
        return self._call("signatures", model, version=version, label=label)

    def _call(self, method, *args, **kwargs):
        """The next replica in turn; on Unavailable the ones after it; then rounds with a growing backoff."""
        count = len(self.transports)
        for attempt in range(self.retries + 1):
            first = next(self._turn)
            for offset in range(count):
                transport = self.transports[(first + offset) % count]
                try:
                    answer = getattr(transport, method)(*args, **kwargs)
                except errors.Unavailable as error:
                    last_error = error
                    with self._lock:
                        self.failovers[endpoint_of(transport)] += 1
                    continue
                with self._lock:
                    self.answered[endpoint_of(transport)] += 1
                return answer
            if attempt < self.retries:
                time.sleep(min(self.backoff * 2**attempt, MAX_BACKOFF_SECONDS))
        raise errors.Unavailable(
            f"none of the {count} replicas took the request ({self.retries + 1} rounds); last: {last_error.message}",
            model=last_error.model,
        )


def endpoint_of(transport):
    """Where a transport sends its requests: the REST URL or the gRPC target."""
    return getattr(transport, "url", None) or getattr(transport, "target", None) or repr(transport)


class RoutedTransport:
    """Each model on its own servers (the split layout: text_encoder and decoder on CPU pods, the U-Net on GPUs).

    A model without a route raises NotFound, as a server that does not serve it would (generate() then takes the
    three-model chain instead of text_to_image)."""

    def __init__(self, routes):
        self.routes = dict(routes)

    def __repr__(self):
        return f"RoutedTransport({self.routes!r})"

    def close(self):
        for transport in self.routes.values():
            transport.close()

    def _route(self, model):
        transport = self.routes.get(model)
        if transport is None:
            raise errors.NotFound(
                f"no endpoint for model {model}: routes are given for {', '.join(sorted(self.routes))}", model=model
            )
        return transport

    def predict(self, model, signature, inputs, *, version=None, label=None):
        return self._route(model).predict(model, signature, inputs, version=version, label=label)

    def model_status(self, model, *, version=None, label=None):
        return self._route(model).model_status(model, version=version, label=label)

    def signatures(self, model, *, version=None, label=None):
        return self._route(model).signatures(model, version=version, label=label)
