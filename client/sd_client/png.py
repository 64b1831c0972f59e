"""PNG text metadata in the form the common Stable Diffusion UIs write and read (AUTOMATIC1111's `parameters`):

    <prompt>
    Negative prompt: <negative prompt>          (line left out when there is none)
    Steps: 50, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 0123456789, Model: diffusion_model,
    Model version: 1, Precision: float32

Sampler: DDIM (KerasCV's, the default), DPM++ 2M, DPM++ 2M Karras, Euler or Euler a, as the SD UIs write them.
Model: the served model that made the image: text_to_image (one request) or diffusion_model (the U-Net of the
text_encoder -> diffusion_model -> decoder chain); both give the same image for the same parameters. Model version:
the label asked for, else the version number; one export writes every model under one number, so a version names the
same weights on both paths. Model hash (the first 10 hex digits of the checkpoint file's sha256, as the SD UIs write
it) and Precision come from the served version's provenance; each is left out when the version does not record it.
"""

import io

from PIL import Image, PngImagePlugin

PARAMETERS_KEY = "parameters"


def parameters_text(
    *,
    prompt,
    negative_prompt,
    num_steps,
    guidance_scale,
    seed,
    width,
    height,
    model,
    model_version,
    model_hash=None,
    precision=None,
    sampler="DDIM",
):
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    settings = {
        "Steps": num_steps,
        "Sampler": sampler,
        "CFG scale": f"{guidance_scale:g}",
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model,
        "Model version": model_version,
        "Precision": precision,
    }
    lines.append(", ".join(f"{key}: {value}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def with_text(png, key, text):
    """The PNG re-written with a text chunk (tEXt, or iTXt when the text is not Latin-1); pixels unchanged."""
    info = PngImagePlugin.PngInfo()
    info.add_text(key, text)
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def read_text(png, key=PARAMETERS_KEY):
    with Image.open(io.BytesIO(png)) as image:
        image.load()  # text chunks after the image data are read only with the pixels
        return image.text.get(key)


def size_of(png):
    """(width, height) from the PNG header."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size
