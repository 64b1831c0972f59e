"""Benchmark: what the samplers cost on the real U-Net (KerasCV's DiffusionModel, random weights), run as TF Serving
runs the export (TF1 session loader, signature tensor names).

  1. The graph cost of the choice: the diffusion_model SavedModel with and without the with_sampler signatures
     (variables/ and saved_model.pb bytes, Conv2D nodes in the graph): the U-Net's weights are variables, stored once
     whatever the number of signatures; each signature adds a traced copy of the U-Net's graph, not of its kernels.
  2. Seconds per image: DDIM at 50 steps (serving_default, KerasCV's sampler) against DPM++ 2M Karras at 20
     (with_sampler), batch 1, interleaved round by round.
  3. Per-step cost of every sampler against DDIM's at the same step count, each round's time divided by DDIM's in
     the same round; DDIM through serving_default and through with_sampler (the tf.switch_case's cost).

    .venv/bin/python tests/bench/bench_samplers.py [--size 128] [--repeats 3] [--steps 10] [--skip-size]
        [--keep DIR] [--skip-timing] [--models DIR]

Builds the 860 M-parameter U-Net: run it under the machine's heavy lock (flock /tmp/sd-heavy.lock ...), and split a
long run in two (--keep DIR --skip-timing, then --models DIR) to hold the lock less long each time. TensorFlow
settings come from the environment (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1: as served for CPU, README "CPU speed").
"""

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tables import print_table  # noqa: E402

HEADLINE = (("DDIM", 50), ("DPM++ 2M Karras", 20))
TF_SETTINGS = ("TF_ENABLE_ONEDNN_OPTS", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS")


def folder_bytes(folder):
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def graph_facts(export_dir):
    """(saved_model.pb bytes, variables/ bytes, Conv2D nodes in the graph and its function library)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(export_dir) / "saved_model.pb"
    model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    graph = model.meta_graphs[0].graph_def
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    convolutions = sum(node.op == "Conv2D" for node in nodes)
    return pb.stat().st_size, folder_bytes(Path(export_dir) / "variables"), convolutions


def export_both(unet, size, ddim_dir, export_dir):
    """Save diffusion_model with the DDIM signatures only (to ddim_dir) and with every one (to export_dir); print
    their sizes."""
    import tensorflow as tf

    from sd_export import contract
    from sd_export.diffusion_model import DiffusionModelServable

    ddim_only = (contract.DEFAULT_SIGNATURE, contract.FROM_NOISE_SIGNATURE)
    rows = []
    for label, keep, folder in (("DDIM signatures only", ddim_only, ddim_dir), ("every signature", None, export_dir)):
        servable = DiffusionModelServable(unet, size, size)
        signatures = {name: f for name, f in servable.signatures().items() if keep is None or name in keep}
        started = time.perf_counter()
        tf.saved_model.save(servable, str(folder), signatures=signatures)
        seconds = time.perf_counter() - started
        pb_bytes, variable_bytes, convolutions = graph_facts(folder)
        signatures = ", ".join(signatures)
        rows.append([label, signatures, f"{variable_bytes / 1e6:.1f} MB", f"{pb_bytes / 1e6:.2f} MB", convolutions,
                     f"{seconds:.0f} s"])
    parameters = sum(v.numpy().nbytes for v in unet.variables)
    print(f"\ndiffusion_model at {size}x{size}: U-Net parameters {parameters / 1e6:.1f} MB")
    print_table(["export", "signatures", "variables/", "saved_model.pb", "Conv2D nodes", "save time"], rows)


def timed_rounds(contenders, repeats):
    """{name: [seconds, one per round]}: a warm-up round at 1 step (the first run of a signature pays for its
    executor), then `repeats` rounds in which every contender runs once, back to back, so that load from other
    processes falls on all of them alike."""
    samples = {name: [] for name in contenders}
    for run, _ in contenders.values():
        run(1)
    for round_number in range(repeats):
        started = time.perf_counter()
        for name, (run, steps) in contenders.items():
            begun = time.perf_counter()
            run(steps)
            samples[name].append(time.perf_counter() - begun)
        print(f"round {round_number + 1}/{repeats}: {time.perf_counter() - started:.0f} s", flush=True)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps of the per-step comparison")
    parser.add_argument("--skip-size", action="store_true", help="leave out the export without the sampler signatures")
    parser.add_argument("--keep", type=Path, help="write the export (with the sampler signatures) here and keep it")
    parser.add_argument("--models", type=Path, help="time this diffusion_model export instead of building one")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-samplers-") as scratch:
        export_dir = args.models or export(args, args.keep or Path(scratch) / "export", Path(scratch))
        if args.skip_timing:
            return
        from tf1 import Tf1Model

        model = Tf1Model(export_dir)
        try:
            time_samplers(model, args)
        finally:
            model.close()


def export(args, export_dir, scratch):
    """Build the U-Net and write diffusion_model (every signature) to export_dir; the U-Net is let go afterwards."""
    import keras
    import tensorflow as tf
    from keras_cv.models.stable_diffusion import DiffusionModel

    from sd_export import contract
    from sd_export.diffusion_model import DiffusionModelServable

    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    unet = DiffusionModel(args.size, args.size, contract.MAX_PROMPT_TOKENS, download_weights=False)
    print(f"built the U-Net in {time.perf_counter() - started:.0f} s", flush=True)
    if args.skip_size:
        servable = DiffusionModelServable(unet, args.size, args.size)
        tf.saved_model.save(servable, str(export_dir), signatures=servable.signatures())
        del servable
    else:
        export_both(unet, args.size, scratch / "ddim-only", export_dir)
        shutil.rmtree(scratch / "ddim-only")
    del unet
    keras.backend.clear_session()
    gc.collect()
    return export_dir


def time_samplers(model, args):
    from sd_export import contract

    rng = np.random.default_rng(0)
    shape = (1, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM)
    base = {
        "context": rng.standard_normal(shape).astype(np.float32),
        "unconditional_context": rng.standard_normal(shape).astype(np.float32),
        "guidance_scale": np.float32(7.5),
        "seed": np.array([0], np.int32),
    }

    def runner(sampler, via_default=False):
        def run(steps):
            inputs = dict(base, num_steps=np.int32(steps))
            if via_default:
                return model.run(contract.DEFAULT_SIGNATURE, inputs)
            return model.run(contract.SAMPLER_SIGNATURE, dict(inputs, sampler=np.array(sampler.encode(), object)))

        return run

    headline = {f"{name}, {steps} steps": (runner(name, name == "DDIM"), steps) for name, steps in HEADLINE}
    reference = ("DDIM", "serving_default")
    per_step = {reference: (runner("DDIM", True), args.steps)}
    per_step.update({(name, "with_sampler"): (runner(name), args.steps) for name in contract.SAMPLERS})
    settings = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in TF_SETTINGS)
    print(f"timing: {args.repeats} interleaved rounds after a warm-up round; {settings}", flush=True)
    samples = timed_rounds({**headline, **per_step}, args.repeats)

    size = f"{args.size}x{args.size}, batch 1, median of {args.repeats} interleaved rounds"
    print(f"\nSeconds per image (diffusion_model only), {size}")
    ddim = statistics.median(samples[next(iter(headline))])
    print_table(
        ["sampler, steps", "seconds", "speed-up over DDIM 50"],
        [[name, f"{statistics.median(samples[name]):.2f} s", f"{ddim / statistics.median(samples[name]):.2f}x"]
         for name in headline],
    )
    # Each round's time against DDIM's in the same round (paired: the load of that moment cancels); at this size the
    # fixed cost (noise, checks) is about a tenth of a step, so time / steps is the per-step cost.
    print(f"Per step at {args.steps} steps, {size}; against DDIM: the median of each round's ratio")
    rows = []
    for key, times in samples.items():
        if key in per_step:
            ratio = statistics.median(t / r for t, r in zip(times, samples[reference]))
            rows.append([*key, f"{statistics.median(times) / args.steps:.3f} s", f"{(ratio - 1) * 100:+.1f} %",
                         " ".join(f"{t / r:.3f}" for t, r in zip(times, samples[reference]))])
    print_table(["sampler", "signature", "per step", "against DDIM (serving_default)", "ratio in each round"], rows)


if __name__ == "__main__":
    main()
