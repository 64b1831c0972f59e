"""Several clients at once (REST in both forms and gRPC, several models and versions): every result equals the one the
same request got alone."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from server_requests import (
    GrpcClients,
    assert_outputs_match,
    columnar_body,
    decode_json_output,
    outputs_from_columnar,
    outputs_from_predictions,
    outputs_from_response,
    rest_predict,
    row_body,
)

CLIENTS = 8
ROUNDS = 2


def jobs(examples):
    """(transport, model, signature, version, inputs) for a mix of every signature and both versions."""
    rng = np.random.default_rng(1)
    work = []
    for (model, signature), inputs in sorted(examples.items()):
        for version in (1, 2) if model != "strings" else (1,):
            varied = dict(inputs)
            if "seed" in varied:
                varied["seed"] = rng.integers(0, 1000, 2).astype(np.int32)
            if "latent" in varied:
                varied["latent"] = rng.standard_normal(varied["latent"].shape).astype(np.float32)
            for transport in ("grpc", "columnar", "row"):
                if transport == "row" and model == "diffusion_model":
                    continue  # scalar inputs: columnar form only
                work.append((transport, model, signature, version, varied))
    return work


def run(job, rest_url, grpc_clients, like):
    transport, model, signature, version, inputs = job
    if transport == "grpc":
        return outputs_from_response(grpc_clients().predict(model, signature, inputs, version=version))
    body = row_body(inputs, signature) if transport == "row" else columnar_body(inputs, signature)
    response = rest_predict(rest_url, model, body, version=version)
    assert response.status_code == 200, response.text
    names = sorted(like)
    raw = response.json()
    raw = (
        outputs_from_predictions(raw["predictions"], names)
        if transport == "row"
        else outputs_from_columnar(raw["outputs"], names)
    )
    return {name: decode_json_output(name, value, like[name]) for name, value in raw.items()}


def test_concurrent_clients_get_the_sequential_results(server, reference, examples):
    work = jobs(examples)
    expected = [reference[(job[1], job[3])].run(job[2], job[4]) for job in work]
    local = threading.local()
    channels = []

    def grpc_clients():  # one channel per client thread, as separate clients would have
        if not hasattr(local, "clients"):
            local.clients = GrpcClients(server.grpc_target)
            channels.append(local.clients)
        return local.clients

    sequential = [run(job, server.rest_url, grpc_clients, want) for job, want in zip(work, expected, strict=True)]
    for got, want in zip(sequential, expected, strict=True):
        assert_outputs_match(got, want)

    indices = [index for _ in range(ROUNDS) for index in range(len(work))]
    np.random.default_rng(2).shuffle(indices)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: (i, run(work[i], server.rest_url, grpc_clients, expected[i])), indices))
    for channel in channels:
        channel.close()
    assert len(results) == ROUNDS * len(work)
    for index, got in results:
        assert_outputs_match(got, sequential[index])
