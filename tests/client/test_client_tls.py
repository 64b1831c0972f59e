"""https:// and grpcs://: TLS to a server whose certificate a private CA file vouches for (a self-signed one here)."""

import concurrent.futures
import shutil
import ssl
import subprocess

import numpy as np
import pytest
from client_fakes import FakeRestServer

from sd_client import Client, errors
from sd_client.transports.grpc_api import GrpcTransport
from sd_client.transports.rest import RestTransport

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def https_server(certificate):
    server = FakeRestServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.url = server.url.replace("http://127.0.0.1", "https://localhost")
    server.answers = [(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}, 0)]
    yield server
    server.close()


def test_https_with_a_ca_file(https_server, certificate):
    client = Client(https_server.url, ca_file=certificate[0])
    assert [s.version for s in client.transport.model_status("decoder")] == [1]


def test_https_refuses_an_untrusted_certificate(https_server):
    with pytest.raises(errors.Unavailable, match="(?i)certificate"):
        RestTransport(https_server.url, retries=0).model_status("decoder")


@pytest.fixture
def grpcs_server(certificate):
    grpc = pytest.importorskip("grpc")
    from test_client_grpc import FakeServing
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    servicer = FakeServing()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(certificate[1].read_bytes(), certificate[0].read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"localhost:{port}"
    server.stop(grace=None)


def test_grpcs_with_a_ca_file(grpcs_server, certificate):
    client = Client(f"grpcs://{grpcs_server}", ca_file=certificate[0])
    outputs = client.transport.predict("decoder", "png", {"latent": np.ones((1, 2, 2, 4), np.float32)})
    assert outputs["latent"].shape == (1, 2, 2, 4)


def test_grpcs_refuses_an_untrusted_certificate(grpcs_server):
    with pytest.raises(errors.Unavailable):
        GrpcTransport(grpcs_server, secure=True, retries=0, timeout=10).predict(
            "decoder", "png", {"latent": np.ones((1, 2, 2, 4), np.float32)}
        )


def test_an_unreadable_ca_file_is_named(tmp_path):
    with pytest.raises(errors.ValidationError, match="cannot read the CA file"):
        Client("grpcs://localhost:1", ca_file=tmp_path / "missing.pem")
