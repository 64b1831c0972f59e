"""Every sampler served over REST and gRPC by the local server equals the same sampler run in-process, on the
stand-in models exported by the real exporter (both the chain and text_to_image); bad names are refused by the
client before sending and by the graph with INVALID_ARGUMENT naming the `sampler` input."""

import numpy as np
import pytest

from sd_client import Client, contract
from sd_client.errors import InvalidArgument, ValidationError

SEEDS = [11, 12]
STEPS = 4


def _contexts():
    rng = np.random.default_rng(3)
    shape = (len(SEEDS), contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def clients_of(server, config, vocab_path):
    """The same models in-process, over REST and over gRPC."""
    rest_url, grpc_target = server
    return {
        "in-process": Client(config, vocab_path=vocab_path),
        "rest": Client(rest_url, vocab_path=vocab_path),
        "grpc": Client(f"grpc://{grpc_target}", vocab_path=vocab_path),
    }


def _diffusion_inputs(context, unconditional):
    """A with_sampler / serving_default request's inputs, sampler aside."""
    return {
        "context": context,
        "unconditional_context": unconditional,
        "num_steps": np.int32(STEPS),
        "guidance_scale": np.float32(7.5),
        "seed": np.asarray(SEEDS, np.int32),
    }


@pytest.fixture(scope="module")
def clients(chain_server, standin_repository, clip_vocab_path):
    made = clients_of(chain_server, standin_repository / "models.config", clip_vocab_path)
    yield made
    for client in made.values():
        client.close()


def _close(actual, expected):
    return np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("sampler", contract.SAMPLERS)
def test_diffuse_served_equals_in_process(clients, sampler):
    context, unconditional = _contexts()
    latents = {
        name: client.diffuse(context, unconditional, num_steps=STEPS, seed=SEEDS, sampler=sampler.lower())
        for name, client in clients.items()
    }
    for name in ("rest", "grpc"):
        assert _close(latents[name], latents["in-process"]), f"{sampler} over {name}"
    noise = np.random.default_rng(4).standard_normal(latents["rest"].shape).astype(np.float32)
    seeds = SEEDS if sampler != contract.DEFAULT_SAMPLER else None
    from_noise = {
        name: client.diffuse(context, unconditional, num_steps=STEPS, initial_latent=noise, seed=seeds, sampler=sampler)
        for name, client in clients.items()
    }
    for name in ("rest", "grpc"):
        assert _close(from_noise[name], from_noise["in-process"]), f"{sampler} from noise over {name}"


def test_samplers_give_different_latents_and_ddim_is_the_old_signature(clients):
    context, unconditional = _contexts()
    client = clients["grpc"]
    latents = {s: client.diffuse(context, unconditional, num_steps=STEPS, seed=SEEDS, sampler=s) for s in contract.SAMPLERS}
    for a in contract.SAMPLERS:
        for b in contract.SAMPLERS:
            if a < b:
                assert not np.allclose(latents[a], latents[b]), (a, b)
    # with_sampler("DDIM") runs the same graph as serving_default: bit for bit.
    inputs = _diffusion_inputs(context, unconditional)
    old = client.transport.predict(contract.DIFFUSION_MODEL, contract.DEFAULT_SIGNATURE, dict(inputs))["latent"]
    inputs["sampler"] = np.array(b"ddim", object)
    new = client.transport.predict(contract.DIFFUSION_MODEL, contract.SAMPLER_SIGNATURE, inputs)["latent"]
    np.testing.assert_array_equal(new, old)


def test_euler_a_image_of_a_batch_equals_it_alone(clients):
    """Euler a's per-step noise comes from each image's seed and the step, not from the batch."""
    context, unconditional = _contexts()
    client = clients["rest"]
    batch = client.diffuse(context, unconditional, num_steps=STEPS, seed=SEEDS, sampler="Euler a")
    alone = client.diffuse(context[1:], unconditional[1:], num_steps=STEPS, seed=SEEDS[1:], sampler="Euler a")
    assert _close(alone[0], batch[1])
    other_seed = client.diffuse(context[1:], unconditional[1:], num_steps=STEPS, seed=[99], sampler="Euler a")
    assert not np.allclose(other_seed, alone)


def test_unknown_sampler_refused_before_sending_and_by_the_graph(clients):
    client = clients["grpc"]
    context, unconditional = _contexts()
    with pytest.raises(ValidationError, match="sampler 'LMS' is not one of"):
        client.diffuse(context, unconditional, num_steps=STEPS, seed=SEEDS, sampler="LMS")
    inputs = dict(_diffusion_inputs(context, unconditional), sampler=np.array(b"LMS", object))
    for name in ("rest", "grpc"):
        with pytest.raises(InvalidArgument, match="sampler must be one of .*LMS"):
            clients[name].transport.predict(contract.DIFFUSION_MODEL, contract.SAMPLER_SIGNATURE, dict(inputs))


def test_text_to_image_served_equals_in_process(one_request_server, standin_repository, clip_vocab_path):
    clients = clients_of(one_request_server, standin_repository / "text_to_image.config", clip_vocab_path)
    try:
        for client in clients.values():
            assert client.samplers() == list(contract.SAMPLERS)
        for sampler in contract.SAMPLERS:
            results = {
                name: client.generate("a fox", num_steps=STEPS, seed=5, sampler=sampler.upper())
                for name, client in clients.items()
            }
            for name in ("rest", "grpc"):
                for mine, reference in zip(results[name], results["in-process"]):
                    assert mine.model == contract.TEXT_TO_IMAGE
                    difference = np.abs(mine.array.astype(int) - reference.array.astype(int)).max()
                    assert difference <= 1, f"{sampler} over {name}: {difference} levels"
            assert f"Sampler: {sampler}," in results["grpc"][0].parameters
            assert results["grpc"][0].sampler == sampler
    finally:
        for client in clients.values():
            client.close()
