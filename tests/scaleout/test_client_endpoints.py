"""The client's endpoint handling: lists, comma-separated strings and per-model maps of URLs, round-robin with
failover over replicas, dns:/// targets for gRPC's round_robin policy, and the CLI's repeated --url."""

import http.server
import json
import socket
import threading

import numpy as np
import pytest

from sd_client import cli, errors
from sd_client.transports import open_transport
from sd_client.transports.grpc_api import GrpcTransport, retry_service_config
from sd_client.transports.replicas import ReplicatedTransport, RoutedTransport
from sd_client.transports.rest import RestTransport


class Replica:
    """A transport that answers with its own name, or raises what it is told to."""

    def __init__(self, name, error=None):
        self.url = name
        self.error = error
        self.calls = 0
        self.closed = False

    def predict(self, model, signature, inputs, *, version=None, label=None):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"from": np.array(self.url, object)}

    def model_status(self, model, *, version=None, label=None):
        return self.predict(model, None, {})

    def signatures(self, model, *, version=None, label=None):
        return self.predict(model, None, {})

    def close(self):
        self.closed = True


def call(transport, model="decoder"):
    return str(transport.predict(model, "png", {})["from"])


def test_requests_go_round_robin():
    replicas = [Replica("a"), Replica("b"), Replica("c")]
    transport = ReplicatedTransport(replicas, backoff=0)
    answers = [call(transport) for _ in range(30)]
    assert answers[:6] == ["a", "b", "c", "a", "b", "c"]
    assert [r.calls for r in replicas] == [10, 10, 10]
    assert transport.answered == {"a": 10, "b": 10, "c": 10}


def test_a_request_a_replica_cannot_take_goes_to_the_next():
    dead = Replica("b", errors.Unavailable("connection refused"))
    replicas = [Replica("a"), dead, Replica("c")]
    transport = ReplicatedTransport(replicas, backoff=0)
    answers = [call(transport) for _ in range(6)]
    assert "b" not in answers and len(answers) == 6
    assert transport.failovers == {"b": 2}
    assert transport.answered["a"] + transport.answered["c"] == 6


def test_a_failed_over_request_reaches_the_next_replica_unchanged():
    """The retry carries the same model, signature, version or label and inputs (the seed among them), so the next
    replica draws the same noise and returns the same image."""
    seen = []

    class Recording(Replica):
        def predict(self, model, signature, inputs, *, version=None, label=None):
            seen.append((self.url, model, signature, {k: v.copy() for k, v in inputs.items()}, version, label))
            return super().predict(model, signature, inputs, version=version, label=label)

    transport = ReplicatedTransport([Recording("a", errors.Unavailable("reset")), Recording("b")], backoff=0)
    inputs = {"seed": np.array([42], np.int32), "context": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}
    assert str(transport.predict("diffusion_model", "serving_default", inputs, label="tuned")["from"]) == "b"
    (first, *sent_a), (second, *sent_b) = seen
    assert (first, second) == ("a", "b")
    assert sent_a[:2] == sent_b[:2] == ["diffusion_model", "serving_default"]
    assert sent_a[3:] == sent_b[3:] == [None, "tuned"]
    assert sent_a[2].keys() == sent_b[2].keys() == inputs.keys()
    for name, value in inputs.items():
        np.testing.assert_array_equal(sent_b[2][name], value)
        np.testing.assert_array_equal(sent_a[2][name], sent_b[2][name])


@pytest.mark.parametrize("error", [errors.InvalidArgument("bad seed"), errors.NotFound("no label"),
                                   errors.DeadlineExceeded("slow")])  # fmt: skip
def test_other_errors_are_the_answer_and_are_not_repeated(error):
    replicas = [Replica("a", error), Replica("b")]
    with pytest.raises(type(error)):
        call(ReplicatedTransport(replicas, backoff=0))
    assert replicas[1].calls == 0, "a refused request must not run again elsewhere"


def test_when_every_replica_is_down_rounds_repeat_then_unavailable():
    replicas = [Replica(name, errors.Unavailable(f"{name} refused", model="decoder")) for name in "ab"]
    with pytest.raises(errors.Unavailable, match="none of the 2 replicas took the request .3 rounds.") as caught:
        call(ReplicatedTransport(replicas, retries=2, backoff=0))
    assert caught.value.model == "decoder"
    assert [r.calls for r in replicas] == [3, 3]


def test_routes_send_each_model_to_its_servers():
    cpu, gpu = Replica("cpu"), Replica("gpu")
    transport = RoutedTransport({"text_encoder": cpu, "decoder": cpu, "diffusion_model": gpu})
    assert [call(transport, m) for m in ("text_encoder", "diffusion_model", "decoder")] == ["cpu", "gpu", "cpu"]
    assert str(transport.model_status("diffusion_model")["from"]) == "gpu"
    with pytest.raises(errors.NotFound, match="no endpoint for model text_to_image"):
        transport.model_status("text_to_image")  # generate() then takes the three-model chain
    transport.close()
    assert cpu.closed and gpu.closed


def test_urls_in_a_list_or_with_commas_become_replicas_without_library_retries():
    for urls in (["grpc://a:8500", "http://b:8501"], "grpc://a:8500, http://b:8501"):
        transport = open_transport(urls, retries=4)
        assert isinstance(transport, ReplicatedTransport) and transport.retries == 4
        grpc, rest = transport.transports
        assert isinstance(grpc, GrpcTransport) and grpc.target == "a:8500"
        assert isinstance(rest, RestTransport) and rest.url == "http://b:8501" and rest.retries == 0
        transport.close()
    single = open_transport(["grpc://a:8500"])
    assert isinstance(single, GrpcTransport)
    single.close()


def test_a_map_routes_models_to_replicas():
    transport = open_transport({"text_encoder": "http://cpu:8501", "diffusion_model": ["grpc://g1:8500", "grpc://g2"]})
    assert isinstance(transport, RoutedTransport)
    assert isinstance(transport.routes["text_encoder"], RestTransport)
    assert [t.target for t in transport.routes["diffusion_model"].transports] == ["g1:8500", "g2:8500"]
    transport.close()


@pytest.mark.parametrize(
    "urls, message",
    [
        ("grpc://a:8500,,grpc://b:8500", "empty endpoint"),
        (["grpc://a:8500", "models"], "must all be server URLs"),
        ([], "empty endpoint"),
        ({}, "endpoint map is empty"),
        ({"decoder": ["ftp://x"]}, "unsupported URL scheme"),
    ],
)
def test_bad_endpoint_lists_are_refused_by_name(urls, message):
    with pytest.raises(errors.ValidationError, match=message):
        open_transport(urls)


def test_dns_targets_go_to_grpc_with_round_robin():
    transport = open_transport("dns:///sd-serving-grpc.default.svc.cluster.local:8500")
    assert isinstance(transport, GrpcTransport)
    assert transport.target == "dns:///sd-serving-grpc.default.svc.cluster.local:8500"
    transport.close()
    config = retry_service_config(3, balanced=True)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert retry_service_config(0, balanced=True) == {"loadBalancingConfig": [{"round_robin": {}}]}
    json.dumps(config)  # what the channel option carries


def test_the_cli_takes_url_repeated_or_with_commas(monkeypatch):
    parser = cli.build_parser()
    args = parser.parse_args(["health", "--url", "grpc://a:8500", "--url", "grpc://b:8500,grpc://c:8500"])
    transport = open_transport(cli.endpoints(args.url))
    assert [t.target for t in transport.transports] == ["a:8500", "b:8500", "c:8500"]
    transport.close()
    assert cli.endpoints(parser.parse_args(["health", "--url", "http://a:8501"]).url) == "http://a:8501"
    monkeypatch.setenv(cli.URL_ENV, "http://env:8501")
    assert cli.endpoints(parser.parse_args(["health"]).url) == "http://env:8501"
    monkeypatch.delenv(cli.URL_ENV)
    assert cli.endpoints(parser.parse_args(["health"]).url) is None  # in-process


def test_a_rest_answer_cut_off_by_a_dying_server_is_unavailable():
    """A replica killed while it sends its answer: the next replica may take the request (the same seed gives the same
    image), so it is Unavailable, as gRPC reports a reset connection."""

    class CutOff(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"outputs": ')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), CutOff)
    threading.Thread(target=server.handle_request, daemon=True).start()
    transport = RestTransport(f"http://127.0.0.1:{server.server_address[1]}", retries=0)
    try:
        with pytest.raises(errors.Unavailable, match="broke during the answer"):
            transport.predict("decoder", "png", {"latent": np.zeros((1, 2, 2, 4), np.float32)})
    finally:
        transport.close()
        server.server_close()
