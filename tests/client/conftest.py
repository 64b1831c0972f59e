"""Fixtures of the client tests: a fake transport and a fake TF Serving REST port (the CLIP vocabulary comes from
the root conftest's clip_vocab_path).

The fakes themselves live in client_fakes.py. The gRPC fake (test_client_grpc.py) is built on the official
tensorflow-serving-api servicers, so the client's method paths and messages are checked against code nobody here wrote.
"""

import pathlib
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # prompt_corpus.py and server_process.py live in tests/
    sys.path.insert(0, str(TESTS))

from client_fakes import FakeRestServer, FakeTransport  # noqa: E402


@pytest.fixture
def fake_transport():
    return FakeTransport()


@pytest.fixture
def fake_rest():
    server = FakeRestServer()
    yield server
    server.close()
