"""The sampler over a fake transport: names canonicalised, the signature each one calls, the PNG metadata, and
unknown names or step counts a sampler cannot take refused before anything is sent (the served refusal, INVALID_ARGUMENT
naming the input, is tests/samplers/test_samplers_served.py)."""

import numpy as np
import pytest
from client_fakes import FakeTransport

from sd_client import Client, cli, contract, png
from sd_client.errors import ValidationError

CONTEXT = np.zeros((1, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), np.float32)


@pytest.fixture
def client(fake_transport, clip_vocab_path):
    return Client(transport=fake_transport, vocab_path=clip_vocab_path)


@pytest.mark.parametrize("name", ["LMS", "", "DDIM ", "dpm++2m", "Euler_a", None, 3])
def test_unknown_sampler_is_refused_before_sending(client, fake_transport, name):
    with pytest.raises(ValidationError, match="is not one of DDIM, DPM\\+\\+ 2M, DPM\\+\\+ 2M Karras, Euler, Euler a"):
        client.generate("a cat", sampler=name)
    with pytest.raises(ValidationError, match="is not one of"):
        client.diffuse(CONTEXT, CONTEXT, num_steps=5, seed=[1], sampler=name)
    assert fake_transport.predictions() == []


def test_too_many_steps_for_dpm_solver_is_refused_before_sending(client, fake_transport):
    with pytest.raises(ValidationError, match="num_steps 1000 is out of range"):
        client.generate("a cat", num_steps=1000, sampler="dpm++ 2m")
    assert fake_transport.predictions() == []
    client.generate("a cat", num_steps=1000, sampler="DPM++ 2M Karras")  # distinct sigmas at any count


@pytest.mark.parametrize("asked,canonical", [("dpm++ 2m karras", "DPM++ 2M Karras"), ("EULER A", "Euler a")])
def test_a_sampler_goes_to_with_sampler_in_its_canonical_form(client, fake_transport, asked, canonical):
    result = client.generate("a cat", num_steps=20, seed=7, sampler=asked)[0]
    (_, model, signature, inputs, *_), = [c for c in fake_transport.predictions() if c[1] == contract.DIFFUSION_MODEL]
    assert signature == contract.SAMPLER_SIGNATURE
    assert inputs["sampler"] == np.array(canonical.encode(), object)
    assert result.sampler == canonical
    assert f"Steps: 20, Sampler: {canonical}, CFG scale" in png.read_text(result.png)


class OldExport(FakeTransport):
    """An export from before the with_sampler signatures."""

    def signatures(self, model, *, version=None, label=None):
        return {k: v for k, v in super().signatures(model).items() if not k.startswith("with_sampler")}


@pytest.mark.parametrize("served", [contract.SPLIT_MODELS, [contract.TEXT_TO_IMAGE]])
def test_ddim_goes_to_with_sampler_and_to_serving_default_on_an_old_export(clip_vocab_path, served):
    """One signature for every seeded request: with the weight cache, each signature run holds its own copy."""
    model = served[-1] if len(served) == 1 else contract.DIFFUSION_MODEL
    for transport, signature in ((FakeTransport(served), contract.SAMPLER_SIGNATURE),
                                 (OldExport(served), contract.DEFAULT_SIGNATURE)):  # fmt: skip
        Client(transport=transport, vocab_path=clip_vocab_path).generate("a cat", sampler="ddim")
        (_, _, sent, inputs, *_), = [c for c in transport.predictions() if c[1] == model]
        assert sent == signature
        assert inputs.get("sampler") == (np.array(b"DDIM", object) if signature == contract.SAMPLER_SIGNATURE else None)


def test_ddim_from_an_initial_latent_keeps_from_noise(client, fake_transport):
    """with_sampler_from_noise would want seeds, which DDIM never draws."""
    client.diffuse(CONTEXT, CONTEXT, num_steps=5, initial_latent=np.zeros((1, 16, 16, 4)), sampler="DDIM")
    (_, _, signature, inputs, *_), = fake_transport.predictions()
    assert signature == contract.FROM_NOISE_SIGNATURE and "sampler" not in inputs and "seed" not in inputs


def test_samplers_offered_by_an_old_export(clip_vocab_path):
    assert Client(transport=FakeTransport(), vocab_path=clip_vocab_path).samplers() == list(contract.SAMPLERS)
    assert Client(transport=OldExport(), vocab_path=clip_vocab_path).samplers() == ["DDIM"]


def test_cli_refuses_an_unknown_sampler_in_one_line(monkeypatch, capsys, fake_transport, clip_vocab_path):
    monkeypatch.setattr(cli, "Client", lambda *a, **k: Client(transport=fake_transport, vocab_path=clip_vocab_path))
    with pytest.raises(SystemExit) as caught:
        cli.main(["generate", "x", "--sampler", "LMS"])
    assert caught.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "sampler 'LMS' is not one of DDIM" in errors[0], errors
    assert fake_transport.predictions() == []
