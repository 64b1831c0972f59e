"""How far KerasCV's numerics move a whole generation from diffusers' own, in uint8 levels, on the random oracle.

    python tests/checkpoints/measure_numerics.py [DIR]     (under flock /tmp/sd-heavy.lock: 3.3 min with the build, 10.2 GB peak)

DIR holds torch_oracle.py's checkpoint (built there when missing). KerasCV's StableDiffusion.generate_image runs 20
DDIM steps at 128x128 with the weights sd_export converts from the LDM file; torch_oracle.py generate runs the same
loop on diffusers' models in diffusers' numerics and in KerasCV's (tanh GELU, GroupNorm eps 1e-5). KerasCV runs twice:
in its own numerics and in diffusers' (reference_numerics.py: exact GELU, diffusers' epsilons). The rows: how far
KerasCV's numerics move the image from diffusers'; what the reference numerics leave; and KerasCV against torch in
KerasCV's numerics (what is left once the two known departures are removed on the other side).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 20
GUIDANCE = 7.5
SIZE = 128


def keras_cv_image(folder, inputs):
    from keras_cv.models import StableDiffusion
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, TextEncoder
    from sd_export.checkpoints import open_checkpoint
    from reference_numerics import REFERENCE, set_numerics
    from sd_export.weights import Components, load_part

    model = StableDiffusion(SIZE, SIZE, jit_compile=False)
    model._text_encoder = TextEncoder(77, download_weights=False)
    model._diffusion_model = DiffusionModel(SIZE, SIZE, 77, download_weights=False)
    model._decoder = Decoder(SIZE, SIZE, download_weights=False)
    checkpoint = open_checkpoint(folder / "sd14.safetensors", "diffusion_model")
    for part in ("text_encoder", "diffusion_model", "decoder"):
        load_part(checkpoint, part, getattr(model, f"_{part}"))
    context = model.text_encoder.predict_on_batch([inputs["tokens"], np.arange(77, dtype=np.int32)[None]])

    def generate():
        return model.generate_image(
            context, num_steps=STEPS, unconditional_guidance_scale=GUIDANCE, diffusion_noise=inputs["noise"]
        )

    images = {"keras_cv": generate()}
    set_numerics(Components(model._text_encoder, model._diffusion_model, model._decoder), REFERENCE)
    images["reference"] = generate()
    return images


def generation_inputs():
    from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD, _UNCONDITIONAL_TOKENS

    rng = np.random.default_rng(5)
    timesteps = (np.arange(0, STEPS) * (999 / (STEPS - 1))).round().astype(np.int64)  # keras_cv 0.9's schedule
    alphas = np.array([_ALPHAS_CUMPROD[t] for t in timesteps])
    tokens = np.concatenate([[49406], rng.integers(1, 49405, 12), [49407] * 64]).astype(np.int32)[None]
    return {
        "tokens": tokens,
        "unconditional_tokens": np.array([_UNCONDITIONAL_TOKENS], np.int32),
        "noise": rng.standard_normal((1, SIZE // 8, SIZE // 8, 4)).astype(np.float32),
        "timesteps": timesteps,
        "alphas": alphas,
        "alphas_prev": np.concatenate([[1.0], alphas[:-1]]),
        "guidance": np.float32(GUIDANCE),
    }


def levels(actual, expected):
    difference = np.abs(actual.astype(int) - expected.astype(int))
    return difference.max(), np.percentile(difference, 99), difference.mean(), expected.std()


def main(argv):
    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="sd14-numerics-"))
    oracle = [sys.executable, str(HERE / "torch_oracle.py")]
    if not (folder / "sd14.safetensors").is_file():
        subprocess.run(oracle + ["build", str(folder)], check=True)
    inputs = generation_inputs()
    np.savez(folder / "generate_inputs.npz", **inputs)
    subprocess.run(oracle + ["generate", str(folder)], check=True)
    ours = keras_cv_image(folder, inputs)
    with np.load(folder / "generated.npz") as generated:
        print(f"{STEPS} DDIM steps, guidance {GUIDANCE}, {SIZE}x{SIZE}, random SD 1.4 (randomized norms), uint8 levels")
        print("KerasCV (converted weights) | diffusers' models in | max | 99th pct | mean | image std")
        for keras_cv, torch_numerics in (("keras_cv", "diffusers"), ("reference", "diffusers"),
                                         ("keras_cv", "keras_numerics")):  # fmt: skip
            row = levels(ours[keras_cv], generated[torch_numerics])
            print(f"{keras_cv:<9} numerics | {torch_numerics:<14} | %d | %.1f | %.3f | %.1f" % row)


if __name__ == "__main__":
    main(sys.argv[1:])
