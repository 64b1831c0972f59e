"""Client measurements: install size and import time of `pip install ./client`, and end-to-end generate() time over
REST and gRPC (through sd-model-server) against the in-process transport on the same models; then one text_to_image
request against the three-request chain, over REST and gRPC, side by side.

    .venv/bin/python tests/bench/bench_client.py --models models --steps 50 --images 1 --repeats 3
    .venv/bin/python tests/bench/bench_client.py --standin            # tiny stand-in models, 128x128 (seconds)
    .venv/bin/python tests/bench/bench_client.py --standin --skip-install

Goal: gRPC <= 1.02x and REST <= 1.05x the in-process time. Prints a Markdown table for the README.
The install part makes a fresh virtualenv and installs from the package registry (or pip's cache).
"""

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from tables import print_table

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

HEAVY = ("tensorflow", "keras", "keras_cv", "tf_keras")
PROMPT = "a photograph of an astronaut riding a horse"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--models", type=pathlib.Path, default=ROOT / "models", help="model folder with models.config")
    source.add_argument("--standin", action="store_true", help="export the tiny stand-in models to a temp folder")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-install", action="store_true", help="no fresh-virtualenv install measurement")
    parser.add_argument("--skip-generate", action="store_true", help="no end-to-end measurement")
    parser.add_argument("--skip-text-to-image", action="store_true", help="no one-request vs chain measurement")
    parser.add_argument("--vocab", default=str(ROOT / "client/sd_client/clip/bpe_simple_vocab_16e6.txt.gz"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        venv = None
        if not args.skip_install:
            venv = scratch / "venv"
            print_table(["install (fresh virtualenv)", "value"], measure_install(venv))
        if not args.skip_generate:
            models = export_standins(scratch) if args.standin else args.models
            rows, fresh = measure_generate(models, args, venv, scratch)
            print_table(["transport", "median s", "min s", "x in-process"], rows)
            if fresh:
                print_table(["sd-client from the fresh virtualenv", "result"], fresh)
            if not args.skip_text_to_image:
                print_table(["path", "transport", "median s", "min s", "x chain over gRPC"], measure_one_request(models, args))


def measure_install(venv):
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    start = time.perf_counter()
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT / "client")], check=True)
    install_seconds = time.perf_counter() - start
    site = next((venv / "lib").glob("python*/site-packages"))
    baseline = {"pip", "setuptools", "_distutils_hack"}
    sizes = {}  # top-level folder of site-packages -> bytes
    for f in site.rglob("*"):
        top = f.relative_to(site).parts[0]
        if f.is_file() and top.split("-")[0] not in baseline:
            sizes[top] = sizes.get(top, 0) + f.stat().st_size
    size = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = [line for line in installed if line.split("==")[0].lower().replace("-", "_") in HEAVY]
    imports = [import_seconds(python, "import sd_client") for _ in range(5)]
    grpc_imports = [import_seconds(python, "import sd_client.transports.grpc_api") for _ in range(5)]
    return [
        ["packages installed", " ".join(sorted(installed))],
        ["TensorFlow / Keras installed", ", ".join(heavy) or "none"],
        ["site-packages size (without pip)", f"{size / 1e6:.1f} MB"],
        ["largest", ", ".join(f"{name} {bytes_ / 1e6:.0f} MB" for name, bytes_ in largest)],
        ["pip install time", f"{install_seconds:.1f} s"],
        ["`import sd_client` (median of 5, fresh process)", f"{statistics.median(imports) * 1000:.0f} ms"],
        ["... plus the gRPC transport", f"{statistics.median(grpc_imports) * 1000:.0f} ms"],
    ]


def import_seconds(python, statement):
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def export_standins(folder):
    import standins
    from sd_export.export import export_repository

    models = folder / "models"
    vocab = ROOT / "client/sd_client/clip/bpe_simple_vocab_16e6.txt.gz"
    export_repository(standins.components(128, 128), models, 128, 128, version=1, clip_vocab=vocab)
    return models


def measure_generate(models, args, venv, scratch):
    from server_process import running_server

    from sd_client import Client

    timings = {}
    fresh = []
    with running_server(models / "models.config") as server:
        # The in-process client gets the config file, so it runs the same three-model chain the server serves.
        urls = {"in-process": str(models / "models.config"), "gRPC": f"grpc://{server.grpc_target}", "REST": server.rest_url}
        clients = {name: Client(url, models_dir=models, vocab_path=args.vocab) for name, url in urls.items()}
        try:
            runs = {
                name: (lambda c=client: c.generate(PROMPT, num_images=args.images, num_steps=args.steps, seed=1))
                for name, client in clients.items()
            }
            for run in runs.values():
                run()  # warm-up: session creation, first-call tracing
            timings = {name: [] for name in runs}
            for _ in range(args.repeats):  # interleaved, so outside load falls on every transport alike
                for name, run in runs.items():
                    timings[name].append(timed(run))
        finally:
            for client in clients.values():
                client.close()
        for name, url in urls.items():
            if venv and name != "in-process":  # the TensorFlow-free install talks to the server too
                command = [str(venv / "bin" / "sd-client"), "generate", PROMPT, "--steps", "2", "--seed", "1",
                           "--url", url, "--vocab", args.vocab, "--out", str(scratch / name)]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True)
                fresh.append([name, "ok" if done.returncode == 0 else f"FAILED: {done.stderr.strip()[-300:]}"])
    base = statistics.median(timings["in-process"])
    rows = [
        [name, f"{statistics.median(t):.3f}", f"{min(t):.3f}", f"{statistics.median(t) / base:.3f}"]
        for name, t in timings.items()
    ]
    return rows, fresh


def measure_one_request(models, args):
    """text_to_image (one request, prompt in, PNG out) against the chain (three requests), each on its own server."""
    from server_process import running_server

    from sd_client import Client

    with running_server(models / "models.config") as chain, running_server(models / "text_to_image.config") as one:
        urls = {
            ("chain", "gRPC"): f"grpc://{chain.grpc_target}",
            ("chain", "REST"): chain.rest_url,
            ("text_to_image", "gRPC"): f"grpc://{one.grpc_target}",
            ("text_to_image", "REST"): one.rest_url,
        }
        clients = {key: Client(url, vocab_path=args.vocab) for key, url in urls.items()}
        try:
            runs = {
                key: (lambda c=client: c.generate(PROMPT, num_images=args.images, num_steps=args.steps, seed=1))
                for key, client in clients.items()
            }
            for run in runs.values():
                run()  # warm-up
            timings = {key: [] for key in runs}
            for _ in range(args.repeats):
                for key, run in runs.items():
                    timings[key].append(timed(run))
        finally:
            for client in clients.values():
                client.close()
    base = statistics.median(timings[("chain", "gRPC")])
    return [
        [path, transport, f"{statistics.median(t):.3f}", f"{min(t):.3f}", f"{statistics.median(t) / base:.3f}"]
        for (path, transport), t in timings.items()
    ]


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
