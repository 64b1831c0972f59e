"""The page, driven by gradio_client (Gradio's own client) as the browser drives it: generate, compare, the client's
input limits, and a server error shown as the server's message."""

import re
from pathlib import Path

import pytest
import requests
from conftest import running_ui
from gradio_client import Client as GradioClient
from gradio_client.exceptions import AppError
from server_process import running_server

from sd_client import Client
from sd_client.png import read_text

STEPS = 2
GUIDANCE = 7.5


@pytest.fixture(scope="module")
def page(ui):
    return GradioClient(ui.url, verbose=False)


@pytest.fixture(scope="module")
def direct(ui):
    with Client(ui.rest_url, vocab_path=ui.vocab) as client:
        yield client


def _generate(page, prompt="a red fox", model="stock (version 1)", seed=42, count=2, negative=""):
    return page.predict(prompt, negative, model, "DDIM", STEPS, GUIDANCE, seed, count, api_name="/generate")


def test_generate_shows_each_image_as_the_clients_png(page, direct):
    gallery, status = _generate(page, negative="blurry")
    assert [item["caption"] for item in gallery] == ["stock (version 1) · seed 42", "stock (version 1) · seed 43"]
    assert status.startswith("2 of 2 images")
    for item, seed in zip(gallery, (42, 43)):
        (expected,) = direct.generate(
            "a red fox", negative_prompt="blurry", num_steps=STEPS, guidance_scale=GUIDANCE, seed=seed, label="stock"
        )
        served = Path(item["image"]).read_bytes()
        assert served == expected.png  # the file itself: PNG, parameters chunk and all, not a re-encoding
        assert f"Seed: {seed}," in read_text(served) and "Negative prompt: blurry" in read_text(served)


def test_a_run_leaves_only_gradios_cached_copies_of_its_images(page, ui):
    """A page left running must not fill the disk: a run's own PNG files are removed when it ends, and what the page
    serves afterwards is Gradio's cached copy (its delete_cache clears those)."""
    gallery, _ = _generate(page, prompt="a fox in the snow", seed=1234, count=2)
    assert len(gallery) == 2
    assert list(ui.temp_dir.glob("sd-client-ui-*")) == []
    cached = {path.read_bytes() for path in (ui.temp_dir / "gradio").rglob("*seed-123[45]-*.png")}
    assert cached == {Path(item["image"]).read_bytes() for item in gallery}


def test_a_random_seed_is_drawn_and_shown(page):
    gallery, _ = _generate(page, seed=-1, count=2)
    seeds = [int(re.search(r"seed (\d+)$", item["caption"]).group(1)) for item in gallery]
    assert seeds[1] == seeds[0] + 1
    assert f"Seed: {seeds[0]}," in read_text(Path(gallery[0]["image"]).read_bytes())


def test_compare_puts_two_labels_side_by_side_with_the_same_seeds(page):
    gallery, status = page.predict(
        "a red fox", "", "stock (version 1)", "tuned (version 2)", STEPS, GUIDANCE, 7, 2, api_name="/compare"
    )
    captions = [item["caption"] for item in gallery]
    assert captions == [
        "stock (version 1) · seed 7", "tuned (version 2) · seed 7", "stock (version 1) · seed 8", "tuned (version 2) · seed 8",
    ]  # fmt: skip
    assert status.startswith("4 of 4 images")
    images = [Path(item["image"]).read_bytes() for item in gallery]
    assert images[0] != images[1]  # other weights, same noise
    (stock_again,) = _generate(page, seed=7, count=1)[0]
    assert Path(stock_again["image"]).read_bytes() == images[0]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompt="x" * 5000), "prompt is 5000 UTF-8 bytes, the limit is 4096"),
        (dict(count=9), "greater than maximum value 8"),
        (dict(seed=2147483646), "passes the largest seed 2147483646"),
    ],
)
def test_the_clients_limits_are_shown_as_messages(page, arguments, message):
    with pytest.raises(AppError) as error:
        _generate(page, **arguments)
    assert message in str(error.value) and "Traceback" not in str(error.value)


def test_a_server_error_is_shown_as_its_message(standin_repository, clip_vocab_path):
    """The model server stops behind a running page: the page and the API say so, with the error's message."""
    with running_server(standin_repository / "models.config") as server, running_ui(
        server.rest_url, clip_vocab_path, labels=()
    ) as url:
        page = GradioClient(url, verbose=False)
        server.process.terminate()
        server.process.wait(30)
        with pytest.raises(AppError) as error:
            _generate(page, model="version 2", count=1)
        assert str(error.value).startswith("UNAVAILABLE") and "Traceback" not in str(error.value)
        response = requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "a fox", "steps": STEPS}, timeout=60)
        assert response.status_code == 503 and response.json()["detail"].startswith("UNAVAILABLE")
