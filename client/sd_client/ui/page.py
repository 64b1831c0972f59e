"""The Gradio page: Generate (a prompt, a gallery) and Compare (two versions or labels, the same seeds, side by side).

Images are made one request per image so that the page shows each as it arrives, with the elapsed time. The gallery
serves the client's PNG files as they are (with their `parameters` chunk): its download button saves that file.
"""

import contextlib
import tempfile
import time
from pathlib import Path

import gradio as gr

from .. import contract
from ..client import DEFAULT_GUIDANCE_SCALE, DEFAULT_NUM_STEPS
from ..inputs import resolve_seeds
from ..errors import SdClientError
from ..contract import DEFAULT_SAMPLER
from .models import find_choice

RANDOM_SEED = -1  # as in the SD UIs
# Gradio copies every image shown into its cache; a page left running for weeks must not fill the disk with them. An
# image stays downloadable for a day after it was made.
CACHE_CLEANUP = (3600, 86400)  # Gradio's delete_cache: every hour, the files older than a day (seconds)


def build_page(studio):
    """The Blocks app over a Studio (the client, its served choices, one generation at a time)."""
    titles = [c.title for c in studio.choices()]
    samplers = studio.samplers(titles[0])
    with gr.Blocks(title="Stable Diffusion on TF Serving", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as page:
        gr.Markdown("## Stable Diffusion v1.4 on TensorFlow Serving")
        with gr.Tab("Generate"), gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                negative = gr.Textbox(label="Negative prompt", elem_id="negative-prompt")
                with gr.Row():
                    model = gr.Dropdown(titles, value=titles[0], label="Model version or label", elem_id="model")
                    sampler = gr.Dropdown(samplers, value=samplers[0], label="Sampler", elem_id="sampler")
                settings = _settings(studio, "")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown(elem_id="status")
            gallery = gr.Gallery(label="Images", columns=2, height=560, buttons=["download"], elem_id="gallery")
        with gr.Tab("Compare"), gr.Row():
            with gr.Column():
                compare_prompt = gr.Textbox(label="Prompt", lines=2)
                compare_negative = gr.Textbox(label="Negative prompt")
                with gr.Row():
                    model_a = gr.Dropdown(titles, value=titles[0], label="Left: version or label")
                    model_b = gr.Dropdown(titles, value=titles[-1], label="Right: version or label")
                compare_settings = _settings(studio, "compare-")
                compare_button = gr.Button("Compare", variant="primary")
                compare_status = gr.Markdown()
            compare_gallery = gr.Gallery(label="One row per seed", columns=2, height=560, buttons=["download"])

        def refresh():
            """The served versions and labels, asked again at every page load (a new export shows up)."""
            with _errors_as_messages():
                titles = [c.title for c in studio.choices()]
            first, last = gr.Dropdown(choices=titles, value=titles[0]), gr.Dropdown(choices=titles, value=titles[-1])
            return first, first, last

        def samplers_of(title):
            with _errors_as_messages():
                names = studio.samplers(title)
            return gr.Dropdown(choices=names, value=names[0])

        def generate(prompt, negative, title, sampler, steps, guidance, seed, count, progress=gr.Progress()):
            yield from _run(studio, [title], prompt, negative, sampler, steps, guidance, seed, count, progress)

        def compare(prompt, negative, left, right, steps, guidance, seed, count, progress=gr.Progress()):
            yield from _run(studio, [left, right], prompt, negative, None, steps, guidance, seed, count, progress)

        page.load(refresh, outputs=[model, model_a, model_b], api_visibility="private")
        model.change(samplers_of, inputs=model, outputs=sampler, api_visibility="private")
        button.click(
            generate, inputs=[prompt, negative, model, sampler, *settings], outputs=[gallery, status], api_name="generate"
        )
        prompt.submit(
            generate,
            inputs=[prompt, negative, model, sampler, *settings],
            outputs=[gallery, status],
            api_visibility="private",
        )
        compare_button.click(
            compare,
            inputs=[compare_prompt, compare_negative, model_a, model_b, *compare_settings],
            outputs=[compare_gallery, compare_status],
            api_name="compare",
        )
    return page


def _settings(studio, prefix):
    """steps, guidance, seed, number of images: the bounds are the client's, checked by Gradio before the call."""
    with gr.Row():
        steps = gr.Number(
            DEFAULT_NUM_STEPS, label="Steps", elem_id=f"{prefix}steps", precision=0, minimum=1, maximum=contract.MAX_NUM_STEPS
        )
        guidance = gr.Number(DEFAULT_GUIDANCE_SCALE, label="Guidance (CFG scale)", elem_id=f"{prefix}guidance")
    with gr.Row():
        seed = gr.Number(RANDOM_SEED, label="Seed (-1: random)", elem_id=f"{prefix}seed", precision=0, minimum=RANDOM_SEED)
        count = gr.Number(
            1, label="Images", elem_id=f"{prefix}images", precision=0, minimum=1, maximum=studio.client.max_images
        )
    return steps, guidance, seed, count


def _run(studio, titles, prompt, negative, sampler, steps, guidance, seed, count, progress):
    """Yield (gallery, status) after each image; the gallery holds one row per seed, one column per model.

    The PNG files live in a folder of this run: Gradio copies each yielded gallery into its cache before it asks for
    the next one, so the folder is removed when the run ends (or is cancelled), and nothing piles up."""
    with _errors_as_messages(), tempfile.TemporaryDirectory(prefix="sd-client-ui-") as folder:
        choices = [find_choice(studio.choices(), title) for title in titles]
        # An emptied field means the default: a random seed, one image.
        seeds = resolve_seeds(None if seed in (None, RANDOM_SEED) else int(seed), 1 if count is None else int(count))
        sampler = sampler or DEFAULT_SAMPLER
        gallery, started = [], time.monotonic()
        total = len(seeds) * len(choices)
        for image_seed in seeds:
            for choice in choices:
                done = len(gallery)
                progress(done / total, desc=f"image {done + 1} of {total}, {time.monotonic() - started:.0f} s")
                result = studio.generate_one(prompt, negative or None, steps, guidance, image_seed, choice, sampler)
                path = Path(folder) / f"{result.model_version}-seed-{result.seed}-{done}.png"
                result.save(path)  # the client's PNG, byte for byte: the download button gives this file
                gallery.append((str(path), f"{choice.title} · seed {result.seed}"))
                yield gallery, f"{len(gallery)} of {total} images, {time.monotonic() - started:.1f} s"


@contextlib.contextmanager
def _errors_as_messages():
    """The client's and the server's errors as a message in the page (Gradio's error toast), without a traceback."""
    try:
        yield
    except SdClientError as e:
        raise gr.Error(str(e), print_exception=False) from None
