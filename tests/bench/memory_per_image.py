"""What a batch costs: the peak resident memory of diffusion_model's and decoder's runs for growing batch sizes, each
model loaded alone in a fresh process as the local server loads it (sd_serving.servable.LoadedVersion, the TF1
session loader), to size a server for the export's max batch.

    TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0 .venv/bin/python tests/bench/memory_per_image.py /tmp/bf16/models \\
        [--batches 1 2 4]

diffusion_model runs with_sampler (DDIM) for one step, decoder its png signature; batches run in the order given, so
each peak holds what the smaller batches left in the allocator's pool. Per image is the slope between the first and
the last batch. Each run's time is printed too (the first run of a model includes its warm-up).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sd_client import contract

MODELS = (contract.DIFFUSION_MODEL, contract.DECODER)


def inputs(model, batch, height, width):
    """(signature, {input: array}) of one request of `batch` images."""
    import numpy as np

    if model == contract.DECODER:
        down = contract.LATENT_DOWNSCALE
        shape = (batch, height // down, width // down, contract.LATENT_CHANNELS)
        latent = np.random.default_rng(0).standard_normal(shape)
        return contract.PNG_SIGNATURE, {"latent": latent.astype(np.float32)}
    context = np.zeros((batch, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), np.float32)
    return contract.SAMPLER_SIGNATURE, {
        "context": context, "unconditional_context": context, "num_steps": np.int32(1),
        "guidance_scale": np.float32(7.5), "seed": np.arange(batch, dtype=np.int32),
        "sampler": np.array(b"DDIM", object),
    }  # fmt: skip


def measure(models_dir, model, batches):
    """Runs in the measured process: [loaded peak MB, (peak MB, seconds) of each batch]."""
    from sd_serving.config import version_folders
    from sd_serving.servable import LoadedVersion
    from tf_serving_loader_memory import memory_mb

    def peak_mb():
        return memory_mb()[1]

    version = max(version_folders(Path(models_dir) / model))
    version_dir = Path(models_dir) / model / str(version)
    record = json.loads((version_dir / "assets.extra" / "sd_export.json").read_text())
    loaded = LoadedVersion(model, version, version_dir)
    readings = [peak_mb()]
    for batch in batches:
        signature, values = inputs(model, batch, record["height"], record["width"])
        start = time.perf_counter()
        loaded.run(signature, values)
        readings.append((peak_mb(), time.perf_counter() - start))
    return readings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", help="a model repository (sd-export --models-dir)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.models_dir, args.child, args.batches)))
        return
    print(f"{args.models_dir}: peak resident memory, GB (seconds of the run)")
    for model in args.models:
        command = [sys.executable, __file__, args.models_dir, "--child", model, "--batches", *map(str, args.batches)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        loaded, *runs = json.loads(result.stdout.splitlines()[-1])
        (first_peak, _), (last_peak, _) = runs[0], runs[-1]
        slope = (last_peak - first_peak) / max(args.batches[-1] - args.batches[0], 1) / 1024
        listed = ", ".join(
            f"batch {batch} {peak / 1024:.2f} ({seconds:.1f} s)" for batch, (peak, seconds) in zip(args.batches, runs)
        )
        print(f"  {model:16s} loaded {loaded / 1024:.2f}; {listed}; {slope:.2f} a further image")


if __name__ == "__main__":
    main()
