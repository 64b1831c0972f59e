"""Benchmark: export time and bytes per model; the exported chain against KerasCV's text_to_image, in one run.

Same weights (random, the real architectures), resolution, steps and batch for every contender:
  exported chain, TF1 sessions   the three SavedModels run in this process as TF Serving runs them (TF1 session
                                 loader, signature tensor names), with this process's TensorFlow settings, the
                                 same as KerasCV's: the like-for-like comparison;
  exported chain, sd-model-server   as deployed for CPU serving: the sd_client Client (prompt in, PNGs out) over
                                 gRPC to sd-model-server in its own process, with oneDNN's weight cache
                                 (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1, README: CPU serving);
  KerasCV text_to_image          jit_compile off, and on (after the others; --skip-jit leaves it out).
All run interleaved, round by round. Per-step cost is the slope between two step counts, so text encoding, noise and
decoding cancel out. Run it again with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (or TF_ENABLE_ONEDNN_OPTS=0) in the
environment to compare every contender under those settings.

    .venv/bin/python tests/bench/bench_export.py [--size 128] [--batch 1] [--steps 2 6] [--repeats 3]
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TF_SETTINGS = ("TF_ENABLE_ONEDNN_OPTS", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS")
SERVER_ENVIRONMENT = {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}  # oneDNN's weight cache (README: CPU speed)
SERVER_SETTING = " ".join(f"{name}={value}" for name, value in SERVER_ENVIRONMENT.items())
REFERENCE = "KerasCV text_to_image, jit_compile=False"  # the goal (decisions.md) is a speed-up over this

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLIP_VOCAB = Path(__file__).resolve().parents[2] / "client/sd_client/clip/bpe_simple_vocab_16e6.txt.gz"
PROMPT = "a photograph of an astronaut riding a horse"


def interleaved(contenders, step_counts, repeats):
    """{name: {steps: median seconds}}, running every contender once per round so that load from other processes
    falls on all of them alike. One warm-up round first (tracing, XLA compilation, first-touch allocation)."""
    samples = {name: {steps: [] for steps in step_counts} for name in contenders}
    for round_number in range(repeats + 1):
        for name, run in contenders.items():
            for steps in step_counts:
                started = time.perf_counter()
                run(steps)
                if round_number:
                    samples[name][steps].append(time.perf_counter() - started)
    return {name: {steps: statistics.median(times) for steps, times in by_steps.items()} for name, by_steps in samples.items()}


def folder_bytes(folder):
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-jit", action="store_true", help="leave out KerasCV with jit_compile=True (slow here)")
    parser.add_argument("--skip-server", action="store_true", help="leave out the chain through sd-model-server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        benchmark(args, Path(scratch) / "models")


def benchmark(args, models_dir):
    import keras
    from keras_cv.models import StableDiffusion
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, SimpleTokenizer, TextEncoder
    from keras_cv.src.models.stable_diffusion.constants import _UNCONDITIONAL_TOKENS
    from sd_export.export import export_repository
    from sd_export.weights import Components
    from tf1 import Tf1Model

    size, batch = args.size, args.batch
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    components = Components(
        TextEncoder(77, download_weights=False),
        DiffusionModel(size, size, 77, download_weights=False),
        Decoder(size, size, download_weights=False),
    )
    print(f"built KerasCV models in {time.perf_counter() - started:.1f} s", flush=True)

    _, export_seconds = export_repository(components, models_dir, size, size)
    print(f"\nexport: {export_seconds:.1f} s for all three models at {size}x{size}")
    print("| model | version folder | variables/ | parameters |")
    print("|---|---|---|---|")
    for name in ("text_encoder", "diffusion_model", "decoder"):
        version_dir = models_dir / name / "1"
        parameters = sum(v.numpy().nbytes for v in getattr(components, name).variables)
        print(
            f"| {name} | {folder_bytes(version_dir) / 1e6:.1f} MB | {folder_bytes(version_dir / 'variables') / 1e6:.1f} MB"
            f" | {parameters / 1e6:.1f} MB |"
        )

    served = {name: Tf1Model(models_dir / name / "1") for name in ("text_encoder", "diffusion_model", "decoder")}
    tokenizer = SimpleTokenizer(bpe_path=str(CLIP_VOCAB))
    ids = tokenizer.encode(PROMPT)
    tokens = np.array([ids + [49407] * (77 - len(ids))] * batch, np.int32)
    unconditional = np.array([_UNCONDITIONAL_TOKENS] * batch, np.int32)

    def exported(steps):
        contexts = served["text_encoder"].run("serving_default", {"tokens": tokens, "negative_tokens": unconditional})
        inputs = dict(contexts, num_steps=np.int32(steps), guidance_scale=np.float32(7.5))
        inputs["seed"] = np.arange(batch, dtype=np.int32)
        latent = served["diffusion_model"].run("serving_default", inputs)["latent"]
        return served["decoder"].run("png", {"latent": latent})

    reference = StableDiffusion(size, size, jit_compile=False)
    reference._text_encoder = components.text_encoder
    reference._diffusion_model = components.diffusion_model
    reference._decoder = components.decoder
    reference._tokenizer = tokenizer

    def keras_cv(steps):
        return reference.text_to_image(PROMPT, batch_size=batch, num_steps=steps, seed=0)

    contenders = {"exported chain, TF1 sessions in this process": exported}

    def compile_models(jit):
        for model in (components.text_encoder, components.diffusion_model, components.decoder):
            model.compile(jit_compile=jit)

    low, high = args.steps
    compile_models(False)
    with contextlib.ExitStack() as stack:
        if not args.skip_server:
            name = f"exported chain, sd-model-server with {SERVER_SETTING}, over gRPC (client: prompt in, PNG out)"
            contenders[name] = stack.enter_context(served_chain(models_dir, batch))
        contenders[REFERENCE] = keras_cv
        results = interleaved(contenders, (low, high), args.repeats)
    if not args.skip_jit:
        compile_models(True)  # XLA on this CPU: a reference point, run after the others
        results.update(interleaved({"KerasCV text_to_image, jit_compile=True": keras_cv}, (low, high), args.repeats))

    reference = results[REFERENCE]
    reference_per_step = (reference[high] - reference[low]) / (high - low)
    settings = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in TF_SETTINGS)
    print(f"\n{size}x{size}, batch {batch}, median of {args.repeats} interleaved rounds after a warm-up round")
    server = "" if args.skip_server else f"; sd-model-server: the same, but {SERVER_SETTING}"
    print(f"this process: {settings}{server}")
    print(f"| contender | {low} steps | {high} steps | per step | faster than {REFERENCE} ({high} steps / per step) |")
    print("|---|---|---|---|---|")
    for label, times in results.items():
        per_step = (times[high] - times[low]) / (high - low)
        print(
            f"| {label} | {times[low]:.2f} s | {times[high]:.2f} s | {per_step:.3f} s |"
            f" {reference[high] / times[high]:.2f}x / {reference_per_step / per_step:.2f}x |"
        )


@contextlib.contextmanager
def served_chain(models_dir, batch):
    """A contender: generate() of the thin client over gRPC against sd-model-server serving models_dir."""
    from server_process import running_server

    from sd_client import Client

    config = models_dir / "models.config"
    with running_server(config, environment=SERVER_ENVIRONMENT, start_timeout=1800, rest_api_timeout_in_ms=0) as server:
        with Client(f"grpc://{server.grpc_target}", vocab_path=CLIP_VOCAB, timeout=3600) as client:
            yield lambda steps: client.generate(PROMPT, num_images=batch, num_steps=steps, seed=0)


if __name__ == "__main__":
    main()
