"""KerasCV's own StableDiffusion under a Keras mixed-precision policy: the reference for half-precision exports.

Run as a subprocess (it builds a second U-Net, which must not live in the pytest process beside the float32 session
fixtures): it loads the weight files the float32 fixtures wrote, sets `keras.mixed_precision.set_global_policy`
before building anything, and saves KerasCV's images for a batch of one and a batch of two (same prompt and seed) to
an .npz file.

    python keras_cv_mixed.py --policy mixed_bfloat16 --weights JSON --vocab VOCAB --size 128 --steps 3 \
        --prompt "a cat" --seed 42 --out reference.npz
"""

import argparse
import json

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="mixed_bfloat16 or mixed_float16")
    parser.add_argument("--weights", required=True, help='JSON {"diffusion_model": path, ...}')
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import keras
    from keras_cv.models import StableDiffusion
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, SimpleTokenizer, TextEncoder

    keras.mixed_precision.set_global_policy(args.policy)
    weights = json.loads(args.weights)
    reference = StableDiffusion(args.size, args.size, jit_compile=False)
    reference._text_encoder = TextEncoder(77, download_weights=False)
    reference._diffusion_model = DiffusionModel(args.size, args.size, 77, download_weights=False)
    reference._decoder = Decoder(args.size, args.size, download_weights=False)
    reference._tokenizer = SimpleTokenizer(bpe_path=args.vocab)
    for component in ("text_encoder", "diffusion_model", "decoder"):
        getattr(reference, f"_{component}").load_weights(weights[component])

    def images(batch):
        return reference.text_to_image(
            args.prompt, batch_size=batch, num_steps=args.steps, unconditional_guidance_scale=args.guidance,
            seed=args.seed,
        )  # fmt: skip

    np.savez(args.out, batch_1=images(1), batch_2=images(2))


if __name__ == "__main__":
    main()
