"""sd-client's command line: files written, what it prints, and one-line errors with non-zero exit codes."""

import pathlib
import shutil
import subprocess
import sys

import pytest
from client_fakes import FakeTransport, free_port
from PIL import Image

from sd_client import Client, cli, contract, png


@pytest.fixture
def transport(monkeypatch, clip_vocab_path):
    """cli's Client, bound to a fake transport; the arguments it was built with are kept."""
    fake = FakeTransport()
    fake.client_args = []

    def make_client(url=None, *, strict_prompts=False, **kwargs):
        fake.client_args.append((url, kwargs))
        return Client(transport=fake, vocab_path=clip_vocab_path, strict_prompts=strict_prompts)

    monkeypatch.setattr(cli, "Client", make_client)
    return fake


def test_generate_writes_one_png_per_image_and_a_grid(transport, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        ["generate", "Yoda", "-n", "3", "--steps", "20", "--seed", "42", "--guidance", "6.5", "--negative", "blurry",
         "--label", "pokemon", "--url", "http://127.0.0.1:1", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr()
    names = [f"image-{i}-seed-{42 + i}.png" for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["grid.png"])
    for i, name in enumerate(names):
        assert f"{out / name}\tseed {42 + i}" in printed.out
        parameters = png.read_text((out / name).read_bytes())
        assert parameters.startswith("Yoda\nNegative prompt: blurry\nSteps: 20, Sampler: DDIM, CFG scale: 6.5, ")
        assert parameters.endswith(
            f"Seed: {42 + i}, Size: 128x128, Model hash: 0123456789, Model: diffusion_model, Model version: pokemon, "
            "Precision: bfloat16"
        )  # the hash and precision: the served version's provenance (client_fakes.PROVENANCE)
    assert Image.open(out / "grid.png").size == (2 * 128, 2 * 128)  # 3 images: 2 columns, 2 rows
    # which models make the images, then the elapsed time, on stderr
    route = "generating 3 images with text_encoder -> diffusion_model -> decoder (three requests)"
    assert f"{route}...\n" in printed.err and f"{route}: " in printed.err
    assert transport.client_args[0][0] == "http://127.0.0.1:1"
    diffusion = [c for c in transport.predictions() if c[1] == contract.DIFFUSION_MODEL][0]
    assert diffusion[3]["num_steps"] == 20 and diffusion[3]["guidance_scale"] == 6.5 and diffusion[5] == "pokemon"


def test_generate_says_when_text_to_image_makes_the_images_in_one_request(transport, tmp_path, capsys):
    transport.served.add(contract.TEXT_TO_IMAGE)
    assert cli.main(["generate", "Yoda", "--seed", "7", "--steps", "4", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "generating 1 image with text_to_image (one request)..." in err and "three requests" not in err
    assert [c[1] for c in transport.predictions()] == [contract.TEXT_TO_IMAGE]
    parameters = png.read_text((tmp_path / "image-0-seed-7.png").read_bytes())
    assert parameters == (
        "Yoda\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 7, Size: 128x128, Model hash: 0123456789, "
        "Model: text_to_image, Model version: 3, Precision: bfloat16"
    )


def test_compare_says_which_models_run_for_each_label(transport, tmp_path, capsys):
    transport.served.add(contract.TEXT_TO_IMAGE)
    assert cli.main(["compare", "Yoda", "--labels", "stock", "pokemon", "--seed", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    for label in ("stock", "pokemon"):
        assert f"label {label}: generating with text_to_image (one request)..." in err


def test_url_from_the_environment(transport, tmp_path, monkeypatch):
    monkeypatch.setenv(cli.URL_ENV, "grpc://127.0.0.1:9")
    assert cli.main(["generate", "x", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert transport.client_args[0][0] == "grpc://127.0.0.1:9"


def test_compare_uses_the_same_seeds_on_both_labels(transport, tmp_path, capsys):
    code = cli.main(["compare", "Yoda", "--labels", "stock", "pokemon", "-n", "2", "--out", str(tmp_path)])
    assert code == 0
    diffusion = [c for c in transport.predictions() if c[1] == contract.DIFFUSION_MODEL]
    assert [c[5] for c in diffusion] == ["stock", "pokemon"]
    assert diffusion[0][3]["seed"].tolist() == diffusion[1][3]["seed"].tolist()  # a drawn seed, reused
    seed = diffusion[0][3]["seed"][0]
    assert (tmp_path / f"label-pokemon-image-1-seed-{seed + 1}.png").is_file()
    assert Image.open(tmp_path / "compare.png").size == (2 * 128, 2 * (128 + 20))
    assert str(tmp_path / "compare.png") in capsys.readouterr().out


def test_compare_versions(transport, tmp_path):
    assert cli.main(["compare", "Yoda", "--versions", "1", "2", "--seed", "5", "--out", str(tmp_path)]) == 0
    assert [c[4] for c in transport.predictions() if c[1] == contract.DIFFUSION_MODEL] == [1, 2]


def test_health(transport, capsys):
    assert cli.main(["health"]) == 0
    out = capsys.readouterr().out
    assert "text_encoder: version 3 AVAILABLE" in out
    assert "text_to_image: not served (NOT_FOUND" in out
    transport.served.clear()
    assert cli.main(["health"]) == 1
    assert "no complete set of models" in capsys.readouterr().err


def _single_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "x", "--guidance", "nan"], "guidance_scale must be a finite number"),
        (["generate", "x", "-n", "9"], "9 images in one request, the limit is 8"),
        (["generate", "x", "--seed", "2147483646", "-n", "2"], "passes the largest seed"),
        (["generate", "x", "--steps", "1001"], "num_steps 1001 is out of range"),
        (["generate", "x" * 5000], "5000 UTF-8 bytes"),
        (["generate", "word " * 100, "--strict"], "dropped"),
        (["generate", "x", "--label", "a b"], "not a TF Serving version label"),
    ],
)
def test_bad_values_give_one_line_and_exit_1(transport, tmp_path, capsys, argv, message):
    assert cli.main(argv + ["--out", str(tmp_path)]) == 1
    line = _single_error_line(capsys)
    assert line.startswith("sd-client: error:") and message in line
    assert transport.predictions() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["generate"],
        ["generate", "x", "--steps", "0"],
        ["generate", "x", "--steps", "ten"],
        ["generate", "x", "--label", "a", "--version", "1", "--bogus"],
        ["compare", "x"],
        ["compare", "x", "--labels", "a", "b", "--versions", "1", "2"],
        ["nope"],
    ],
)
def test_usage_errors_give_one_line_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert _single_error_line(capsys).startswith("sd-client")


def test_an_output_folder_that_cannot_be_made_is_one_line(transport, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["generate", "x", "--seed", "1", "--out", str(blocker / "sub")]) == 1
    assert "sd-client: error:" in _single_error_line(capsys)


def test_the_console_script_against_a_server_that_is_down(tmp_path):
    script = shutil.which("sd-client", path=str(pathlib.Path(sys.executable).parent))
    assert script, "sd-client is not installed in this environment (pip install -e ./client)"
    done = subprocess.run(
        [script, "generate", "x", "--url", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "UNAVAILABLE" in errors[0] and "Connection refused" in errors[0], done.stderr
