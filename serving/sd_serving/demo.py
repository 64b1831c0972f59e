"""make demo: on a machine without Docker or a GPU, export if needed, serve locally, generate, stop.

    python -m sd_serving.demo --models-dir models --out out --prompt "a red fox" --steps 50 --seed 42 -n 1

1. No models.config in --models-dir: sd-export writes the models at a small size (256x256 unless told otherwise) with
   KerasCV's stock SD v1.4 weights (CreativeML OpenRAIL-M licence); when they cannot be downloaded, with random
   weights instead, said loudly (the images are then noise). An existing export is used as it is.
2. sd-model-server on free ports (or --rest-port/--grpc-port) over models.config (or text_to_image.config with
   --text-to-image); its log goes to OUT/sd-model-server.log. The demo waits until its ports open (the server loads
   every model first, as TF Serving does) and `sd-client health` reports a complete set of models.
3. `sd-client generate` over REST writes the PNGs to --out.
4. The server is stopped, also when a step fails, on Ctrl-C and on SIGTERM.

It runs the three console scripts (sd-export, sd-model-server, sd-client) as subprocesses: it imports none of their
packages, and TensorFlow loads only in the processes that need it.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sd_serving.cli import DEFAULT_HOST

SPLIT_CONFIG = "models.config"
TEXT_TO_IMAGE_CONFIG = "text_to_image.config"
SERVER_LOG = "sd-model-server.log"
DEFAULT_SIZE = 256  # small: a CPU exports and generates at 256x256 in minutes, at 512x512 in far longer
REQUEST_TIMEOUT_SECONDS = 3600  # a CPU generation is slow; REST's 30 s default would cut it (504)
START_TIMEOUT_SECONDS = 1800  # loading and warming up real-size models on a CPU
STOP_TIMEOUT_SECONDS = 30
CLIP_VOCAB_ENV = "CLIP_VOCAB"
# sd-export's one-line error when KerasCV's weight download fails (sd_export.weights.build_components; a test ties
# the two together): only this failure falls back to random weights, any other stops the demo.
WEIGHTS_DOWNLOAD_FAILED = "could not download KerasCV's SD v1.4 weights"
RANDOM_WEIGHTS_BANNER = """\
################################################################################
#  DEMO WITH RANDOM WEIGHTS: KerasCV's SD v1.4 weights could not be loaded,    #
#  so the models are untrained and every image is noise. For real images run   #
#  `make export` with weights (CKPT=, TEXT_ENCODER=, DECODER=) or on a machine #
#  that can download them, then `make demo` again.                             #
################################################################################"""


class DemoError(Exception):
    """A step that failed; the message says which and where to look."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="sd-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="model repository (default models)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the PNGs and the server log")
    parser.add_argument("--prompt", default="a photograph of an astronaut riding a horse")
    parser.add_argument("--steps", default="50", help="denoising steps (default 50)")
    parser.add_argument("--seed", default="42", help="seed of the first image (default 42)")
    parser.add_argument("-n", "--num-images", default="1", help="images (default 1)")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE, help="export height if exporting (default 256)")
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE, help="export width if exporting (default 256)")
    parser.add_argument("--random-weights", action="store_true", help="export random weights without trying stock")
    parser.add_argument(
        "--clip-vocab", type=Path, default=os.environ.get(CLIP_VOCAB_ENV) or None,
        help=f"CLIP bpe_simple_vocab_16e6.txt.gz for the export and the client (default ${CLIP_VOCAB_ENV}, "
        "else the copy shipped with sd_export and sd_client)",
    )  # fmt: skip
    parser.add_argument("--text-to-image", action="store_true", help=f"serve {TEXT_TO_IMAGE_CONFIG} (one request)")
    parser.add_argument("--rest-port", type=int, default=0, help="REST port (default: a free one)")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (default: a free one)")
    parser.add_argument("--start-timeout", type=float, default=START_TIMEOUT_SECONDS, help="seconds to wait for it")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally below stops the server
    # Ctrl-C stops the demo (and its server) even when started from a shell that ignores SIGINT (a background job).
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_demo(args)
    except DemoError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run_demo(args):
    export_if_needed(args)
    config = args.models_dir / (TEXT_TO_IMAGE_CONFIG if args.text_to_image else SPLIT_CONFIG)
    if not config.is_file():
        raise DemoError(f"{config} not found (text_to_image is exported only with a CLIP vocabulary: --clip-vocab)")
    args.out.mkdir(parents=True, exist_ok=True)
    started = []  # filled the moment the server process exists, so an interrupt at any later point stops it
    try:
        server = start_server(config, args, started)
        rest_url = wait_until_serving(server, args.start_timeout)
        run_tool([tool_path("sd-client"), "health", "--url", rest_url], "sd-client health")
        run_tool(generate_command(args, rest_url), "sd-client generate")
    finally:
        for server in started:
            stop_server(server)
    if random_weights_in(args.models_dir):
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    print(f"demo: images in {args.out}/")


# ---- export


def export_if_needed(args, runner=None):
    """Export unless models.config exists: stock weights first, random ones (loudly) if they cannot be downloaded."""
    runner = runner or run_export
    if (args.models_dir / SPLIT_CONFIG).is_file():
        print(f"demo: using the models in {args.models_dir}/ ({SPLIT_CONFIG} exists)")
        return
    if not args.random_weights:
        print(f"demo: exporting to {args.models_dir}/ at {args.height}x{args.width} with KerasCV's SD v1.4 weights")
        returncode, stderr = runner(export_command(args, random_weights=False))
        if returncode == 0:
            return
        if WEIGHTS_DOWNLOAD_FAILED not in stderr:
            raise DemoError(f"sd-export failed (exit code {returncode}; its message is above)")
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    print(f"demo: exporting to {args.models_dir}/ at {args.height}x{args.width} with RANDOM weights")
    returncode, _ = runner(export_command(args, random_weights=True))
    if returncode != 0:
        raise DemoError(f"sd-export --random-weights failed (exit code {returncode}; its message is above)")


def export_command(args, random_weights):
    command = [tool_path("sd-export"), "--models-dir", str(args.models_dir),
               "--height", str(args.height), "--width", str(args.width)]  # fmt: skip
    if args.clip_vocab:
        command += ["--clip-vocab", str(args.clip_vocab)]
    if random_weights:
        command.append("--random-weights")
    return command


def run_export(command):
    """Run sd-export, its stderr shown as it comes and also kept (to tell a failed download from other errors)."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    kept = []
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            kept.append(line)
    finally:
        process.wait()  # on Ctrl-C, sd-export got the SIGINT too and removes its staging folder
    return process.returncode, "".join(kept)


def random_weights_in(models_dir):
    """Whether any exported version was made with random weights (sd-export's assets.extra/sd_export.json)."""
    for info in Path(models_dir).glob("*/*/assets.extra/sd_export.json"):
        try:
            if json.loads(info.read_text()).get("random_weights"):
                return True
        except (OSError, ValueError):
            continue
    return False


# ---- server


def start_server(config, args, started):
    """Popen sd-model-server and append it to `started` at once (before anything an interrupt could cut short)."""
    rest_port = args.rest_port or free_port()
    grpc_port = args.grpc_port or free_port(avoid=rest_port)
    command = [
        tool_path("sd-model-server"), f"--port={grpc_port}", f"--rest_api_port={rest_port}",
        f"--model_config_file={config}", f"--rest_api_timeout_in_ms={REQUEST_TIMEOUT_SECONDS * 1000}",
    ]  # fmt: skip
    log_path = args.out / SERVER_LOG
    with open(log_path, "w") as log:
        started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    process = started[-1]
    process.rest_port, process.grpc_port, process.log_path = rest_port, grpc_port, log_path
    ports = f"REST {DEFAULT_HOST}:{rest_port}, gRPC {DEFAULT_HOST}:{grpc_port}"
    print(f"demo: sd-model-server pid {process.pid} loading {config} ({ports}; log {log_path})", flush=True)
    return process


def free_port(avoid=None):
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((DEFAULT_HOST, 0))
            port = sock.getsockname()[1]
        if port != avoid:
            return port


def wait_until_serving(process, timeout):
    """The REST URL once the port accepts connections: the server opens its ports only after every model loaded."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise DemoError(f"sd-model-server exited with {process.returncode}:\n{log_tail(process.log_path)}")
        try:
            socket.create_connection((DEFAULT_HOST, process.rest_port), timeout=1).close()
            return f"http://{DEFAULT_HOST}:{process.rest_port}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"sd-model-server not serving after {timeout:.0f} s (log: {process.log_path})")
        time.sleep(0.5)


def stop_server(process):
    """SIGTERM (the server shuts down cleanly), SIGKILL if it does not within STOP_TIMEOUT_SECONDS."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(f"demo: sd-model-server pid {process.pid} stopped")


def log_tail(path, lines=20):
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


# ---- client


def generate_command(args, rest_url):
    command = [tool_path("sd-client"), "generate", args.prompt, "--url", rest_url, "--out", str(args.out),
               "--steps", args.steps, "--seed", args.seed, "-n", args.num_images,
               "--timeout", str(REQUEST_TIMEOUT_SECONDS)]  # fmt: skip
    if args.clip_vocab:
        command += ["--vocab", str(args.clip_vocab)]
    return command


def run_tool(command, what):
    if subprocess.run(command).returncode != 0:
        raise DemoError(f"{what} failed (its message is above)")


def tool_path(name):
    """The console script of this interpreter's environment (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise DemoError(f"{name} not found: run `make install` (it installs export/, serving/ and client/)")
    return found


if __name__ == "__main__":
    sys.exit(main())
