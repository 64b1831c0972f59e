"""sd-export: write KerasCV SD v1.4 as a new version of every model in a TF Serving model repository.

Errors are one line on stderr and a non-zero exit; nothing is written to the repository unless the whole export
succeeds.
"""

import argparse
import os
import sys

from sd_export import contract

CLIP_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
RANDOM_WEIGHTS_BANNER = """\
################################################################################
#  RANDOM WEIGHTS: no weights were loaded. The exported models are untrained  #
#  and every image they make is noise. Use this only for smoke tests and CI.   #
################################################################################"""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="sd-export",
        description="Export KerasCV Stable Diffusion v1.4 (text_encoder, diffusion_model, decoder) as TF Serving "
        "SavedModels. Stock weights are the CreativeML OpenRAIL-M licensed SD v1.4 weights KerasCV downloads.",
    )
    parser.add_argument(
        "--ckpt",
        help="SD 1.x checkpoint: a KerasCV DiffusionModel .h5, a .safetensors (CompVis/LDM layout) or a diffusers "
        "folder; a whole checkpoint also gives the text encoder and decoder. Default: KerasCV's SD v1.4 download",
    )
    parser.add_argument("--text-encoder", help="text encoder from another checkpoint (any format --ckpt takes)")
    parser.add_argument("--decoder", help="VAE decoder from another checkpoint (any format --ckpt takes)")
    parser.add_argument("--random-weights", action="store_true", help="no weights at all (offline smoke tests)")
    parser.add_argument("--height", type=int, default=512, help="image height in pixels (default 512)")
    parser.add_argument("--width", type=int, default=512, help="image width in pixels (default 512)")
    parser.add_argument("--version", type=int, help="version number to write (default: the next free one)")
    parser.add_argument("--label", help="version label to point at this version on every model (e.g. stable)")
    parser.add_argument(
        "--clip-vocab",
        help="CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) for text_to_image's in-graph tokenizer; "
        "default: KerasCV's download, checked against its sha256",
    )
    parser.add_argument(
        "--no-text-to-image",
        dest="text_to_image",
        action="store_false",
        help="write only the three split models (text_to_image holds all their weights again)",
    )
    parser.add_argument("--models-dir", default="models", help="the model repository folder (default: models)")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=contract.DEFAULT_MAX_BATCH,
        help=f"most images per request, checked in the graph (default {contract.DEFAULT_MAX_BATCH})",
    )
    return parser.parse_args(argv)


def main(argv=None):
    """`sd-export [flags]` exports; `sd-export convert CKPT --out DIR` writes KerasCV .h5 files (sd_export.convert)."""
    from sd_export import convert

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter would bury the messages
    argv = sys.argv[1:] if argv is None else list(argv)
    converting = argv[:1] == ["convert"]
    args = convert.parse_args(argv[1:]) if converting else parse_args(argv)
    try:
        outcome = convert.run(args) if converting else f"exported version {run(args)} to {args.models_dir}"
    except KeyboardInterrupt:
        print("sd-export: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as error:  # every failure is one line, never a traceback
        print(f"sd-export: error: {error}", file=sys.stderr)
        return 1
    print(outcome)
    return 0


def run(args):
    # Cheap checks first: a bad resolution, label or weights path fails before TensorFlow is imported.
    from sd_export.repository import check_label, choose_version
    from sd_export.weights import WeightSources

    contract.check_resolution(args.height, args.width)
    check_label(args.label)
    if not 1 <= args.max_batch <= contract.MAX_MAX_BATCH:
        raise ValueError(f"--max-batch {args.max_batch} is not supported: use 1..{contract.MAX_MAX_BATCH}")
    args.version = choose_version(args.models_dir, contract.SPLIT_MODELS, args.version)
    sources = WeightSources(args.ckpt, args.text_encoder, args.decoder, args.random_weights)
    sources.check_files()
    if sources.random:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    print(f"weights: {sources.describe()}", file=sys.stderr)

    from sd_export.export import export_repository
    from sd_export.weights import build_components

    clip_vocab = resolve_clip_vocab(args.clip_vocab) if args.text_to_image else None
    components = build_components(args.height, args.width, sources)
    provenance = {"weights": sources.describe(), "random_weights": sources.random}
    version, seconds = export_repository(
        components,
        args.models_dir,
        args.height,
        args.width,
        args.version,
        args.label,
        args.max_batch,
        provenance,
        clip_vocab,
        source=sources.source(),
    )
    print(f"export took {seconds:.1f} s", file=sys.stderr)
    return version


def resolve_clip_vocab(path):
    """A local vocabulary file, or KerasCV's cached download of it (same URL and sha256 as SimpleTokenizer)."""
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CLIP vocabulary {path}: no such file (bpe_simple_vocab_16e6.txt.gz)")
        return path
    import keras

    try:
        return keras.utils.get_file(
            "bpe_simple_vocab_16e6.txt.gz",
            "https://github.com/openai/CLIP/blob/main/clip/bpe_simple_vocab_16e6.txt.gz?raw=true",
            file_hash=CLIP_VOCAB_SHA256,
        )
    except Exception as error:
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise RuntimeError(
            f"could not download the CLIP vocabulary ({first_line}); pass --clip-vocab PATH (CLIP_VOCAB=) "
            "or --no-text-to-image"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
