"""sd-export convert: any SD 1.x checkpoint -> KerasCV .weights.h5 files (one per model it holds).

    sd-export convert CKPT --out DIR [--text-encoder X] [--decoder Y]

writes DIR/diffusion_model.weights.h5, text_encoder.weights.h5, decoder.weights.h5 and image_encoder.weights.h5 (the
VAE's encoder, for image-to-image), each for the parts the checkpoints hold; Keras' load_weights reads them back
bit-identically, and sd-export --ckpt takes them. Nothing is written unless every part converts: the files are made in
a temporary folder beside DIR and moved in at the end; existing files are never overwritten.
"""

import argparse
import os
import shutil
import tempfile

from sd_export import contract

BUILD_SIZE = 128  # the weights do not depend on the resolution a model is built for


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="sd-export convert",
        description="Convert an SD 1.x checkpoint (KerasCV .h5, CompVis/LDM .safetensors or a diffusers folder) to "
        "KerasCV .weights.h5 files.",
    )
    parser.add_argument("ckpt", help="the checkpoint: a .safetensors file, a diffusers folder, or a KerasCV .h5")
    parser.add_argument("--out", required=True, help="folder for the .weights.h5 files (created if missing)")
    parser.add_argument("--text-encoder", help="text encoder from another checkpoint")
    parser.add_argument("--decoder", help="VAE from another checkpoint")
    return parser.parse_args(argv)


def run(args):
    """Convert as the parsed arguments say; returns the written paths, one a line."""
    return "\n".join(convert(args.ckpt, args.out, args.text_encoder, args.decoder))


def output_name(part):
    return f"{part}.weights.h5"


def convert(ckpt, out, text_encoder=None, decoder=None):
    """Write the .weights.h5 file of every part the checkpoints hold; returns their paths."""
    from sd_export.checkpoints import open_checkpoint
    from sd_export.weights import WeightSources

    whole = open_checkpoint(ckpt, "diffusion_model")
    has_unet = "diffusion_model" in whole.parts()  # a VAE or text encoder alone converts too
    checkpoints = dict(WeightSources(ckpt if has_unet else None, text_encoder, decoder).check_files())
    for part in whole.parts():
        checkpoints.setdefault(part, whole)
    targets = [os.path.join(out, output_name(part)) for part in checkpoints]
    existing = [path for path in targets if os.path.exists(path)]
    if existing:
        raise FileExistsError(f"{existing[0]} exists: convert into an empty folder (files are never overwritten)")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".sd-export-convert-", dir=parent)
    try:
        for part, checkpoint in checkpoints.items():
            write_part(part, checkpoint, os.path.join(staging, output_name(part)))
        os.makedirs(out, exist_ok=True)
        for path in targets:
            os.replace(os.path.join(staging, os.path.basename(path)), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets


def write_part(part, checkpoint, path):
    """Build the part's KerasCV model (one at a time: the U-Net alone is 3.4 GB), load it, save its weights."""
    import gc

    from sd_export.weights import load_part

    model = build(part)
    load_part(checkpoint, part, model)
    model.save_weights(path)
    del model
    gc.collect()


def build(part):
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, ImageEncoder, TextEncoder

    builders = {
        "diffusion_model": lambda: DiffusionModel(BUILD_SIZE, BUILD_SIZE, contract.MAX_PROMPT_TOKENS, download_weights=False),
        "text_encoder": lambda: TextEncoder(contract.MAX_PROMPT_TOKENS, download_weights=False),
        "decoder": lambda: Decoder(BUILD_SIZE, BUILD_SIZE, download_weights=False),
        "image_encoder": lambda: ImageEncoder(download_weights=False),
    }
    return builders[part]()
