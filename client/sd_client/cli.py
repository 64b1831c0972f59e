"""sd-client: generate images, check the server, compare two versions or labels.

    sd-client generate "Yoda" -n 4 --steps 50 --seed 42 --guidance 7.5 --negative "blurry" --label pokemon \
        --url http://127.0.0.1:8501 --out out/
    sd-client health --url grpc://127.0.0.1:8500
    sd-client compare "Yoda" --labels stock pokemon -n 2 --seed 42 --out out/
    sd-client ui --url grpc://127.0.0.1:8500 --label stock --label pokemon    # http://127.0.0.1:7860/

Without --url (or $SD_CLIENT_URL) the models run in this process from ./models (needs the [local] extra).
generate and compare make one request to text_to_image when it is served, else chain the three split models; stderr
says which before waiting. Every error ends the program with a one-line message and a non-zero exit code.
"""

import argparse
import math
import os
import pathlib
import sys
import threading
import time
import warnings

from . import contract
from .client import DEFAULT_GUIDANCE_SCALE, DEFAULT_NUM_STEPS, DEFAULT_TIMEOUT, Client
from .inputs import canonical_sampler
from .errors import SdClientError, ServingError, ValidationError
from .tokenizer import VOCAB_ENV

URL_ENV = "SD_CLIENT_URL"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def main(argv=None):
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return args.run(args)
    except (SdClientError, OSError) as e:
        print(f"sd-client: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("sd-client: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog="sd-client", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate images for a prompt")
    generate.add_argument("prompt", help="the prompt")
    _add_generation_options(generate)
    generate.add_argument("--label", help="version label of the models (e.g. a fine-tuned U-Net)")
    generate.add_argument("--version", type=_non_negative_int, help="model version number")
    _add_connection_options(generate)
    generate.set_defaults(run=run_generate)

    health = commands.add_parser("health", help="show each model's versions and states")
    _add_connection_options(health)
    health.set_defaults(run=run_health)

    compare = commands.add_parser("compare", help="the same prompt and seeds on two labels or versions, side by side")
    compare.add_argument("prompt", help="the prompt")
    _add_generation_options(compare)
    which = compare.add_mutually_exclusive_group(required=True)
    which.add_argument("--labels", nargs=2, metavar=("A", "B"), help="two version labels")
    which.add_argument("--versions", nargs=2, type=_non_negative_int, metavar=("A", "B"), help="two versions")
    _add_connection_options(compare)
    compare.set_defaults(run=run_compare)

    ui = commands.add_parser("ui", help="the web page and the AUTOMATIC1111 API on one port (the [ui] extra)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=_positive_int, default=7860, help="port (default 7860)")
    ui.add_argument("--label", action="append", default=[], help="a version label to offer (repeat; TF Serving "
                    "cannot list labels, an in-process run reads them from the repository)")  # fmt: skip
    _add_connection_options(ui)
    ui.set_defaults(run=run_ui)
    return parser


def _add_generation_options(parser):
    parser.add_argument("-n", "--num-images", type=_positive_int, default=1, help="images (default 1)")
    parser.add_argument("--steps", type=_positive_int, default=DEFAULT_NUM_STEPS, help="denoising steps (default 50)")
    parser.add_argument("--seed", type=_non_negative_int, help="seed of the first image; image i gets seed + i")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE, help="CFG scale (default 7.5)")
    parser.add_argument("--negative", help="negative prompt")
    parser.add_argument(
        "--sampler",
        type=_sampler,
        default=contract.DEFAULT_SAMPLER,
        help=f"one of {', '.join(repr(s) for s in contract.SAMPLERS)}, case ignored (default DDIM, KerasCV's); "
        "DPM++ 2M Karras reaches in 20 steps what DDIM reaches in 50",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"), help="output folder (default out/)")
    parser.add_argument("--strict", action="store_true", help="refuse prompts over 77 tokens instead of cutting them")


def _add_connection_options(parser):
    parser.add_argument(
        "--url",
        action="append",
        help=f"http(s)://HOST:PORT (REST), grpc(s)://HOST:PORT (gRPC), dns:///HOST:PORT (gRPC, round-robin over every "
        f"address of HOST), or a model folder or config file; repeat it or separate URLs with commas to spread the "
        f"requests over replicas; default ${URL_ENV}, else the models in ./models run in this process",
    )
    parser.add_argument(
        "--models-dir",
        help="model folder for the in-process run (default models): both its configs' models; or one config file "
        "(models/models.config: the three-model chain, models/text_to_image.config: one request)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per request (default 600)")
    parser.add_argument("--vocab", help=f"CLIP bpe_simple_vocab_16e6.txt.gz (default ${VOCAB_ENV}, else the copy shipped with sd_client)")
    parser.add_argument("--ca-file", help="PEM certificates to trust for https:// and grpcs:// (a private CA)")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _sampler(text):
    try:
        return canonical_sampler(text)
    except ValidationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a non-negative integer")
    return value


def _client(args):
    return Client(
        endpoints(args.url),
        models_dir=args.models_dir,
        timeout=args.timeout,
        vocab_path=args.vocab,
        strict_prompts=getattr(args, "strict", False),
        ca_file=args.ca_file,
    )


def endpoints(urls):
    """--url given once: that URL; several times or with commas: the list, for replicas; never: $SD_CLIENT_URL or
    None (in-process)."""
    urls = [url for url in (urls or [os.environ.get(URL_ENV)]) if url]
    if not urls:
        return None
    return urls[0] if len(urls) == 1 else urls


def run_generate(args):
    count = f"{args.num_images} image{'s' if args.num_images > 1 else ''}"
    with _client(args) as client, _Elapsed() as elapsed:
        results = _generate(
            client, args, args.seed, _announcer(elapsed, f"generating {count}"), version=args.version, label=args.label
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for index, result in enumerate(results):
        path = args.out / f"image-{index}-seed-{result.seed}.png"
        result.save(path)
        print(f"{path}\tseed {result.seed}")
    grid_path = args.out / "grid.png"
    grid([r.image for r in results]).save(grid_path)
    print(grid_path)
    return 0


def _generate(client, args, seed, on_start, **model_choice):
    """client.generate with the command line's prompt and sampling options; model_choice: version= and/or label=."""
    return client.generate(
        args.prompt,
        negative_prompt=args.negative,
        num_images=args.num_images,
        num_steps=args.steps,
        guidance_scale=args.guidance,
        seed=seed,
        sampler=args.sampler,
        on_start=on_start,
        **model_choice,
    )


def run_compare(args):
    choices = [("label", label) for label in args.labels] if args.labels else [("version", v) for v in args.versions]
    rows = []
    with _client(args) as client:
        seed = args.seed
        for kind, value in choices:
            with _Elapsed() as elapsed:
                results = _generate(client, args, seed, _announcer(elapsed, f"{kind} {value}: generating"), **{kind: value})
            seed = results[0].seed  # a drawn seed is reused for the second run: same noise on both
            rows.append((f"{kind} {value}", results))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, results in rows:
        for index, result in enumerate(results):
            path = args.out / f"{name.replace(' ', '-')}-image-{index}-seed-{result.seed}.png"
            result.save(path)
            print(f"{path}\tseed {result.seed}")
    path = args.out / "compare.png"
    side_by_side([(name, [r.image for r in results]) for name, results in rows]).save(path)
    print(path)
    return 0


def run_ui(args):
    try:
        from .ui import serve
    except ModuleNotFoundError as e:
        if e.name.split(".")[0] not in ("gradio", "fastapi", "uvicorn", "pydantic"):
            raise
        raise SdClientError('the web UI needs Gradio, which is not installed: pip install "./client[ui]"') from e
    with _client(args) as client:
        serve(client, labels=args.label, host=args.host, port=args.port)
    return 0


def run_health(args):
    healthy = {}
    with _client(args) as client:
        for model, statuses in client.health().items():
            if isinstance(statuses, ServingError):
                print(f"{model}: not served ({statuses.code}: {_one_line(statuses.message)})")
                healthy[model] = False
                continue
            versions = ", ".join(
                f"version {s.version} {s.state}" + (f" ({s.error_message})" if s.error_message else "")
                for s in statuses
            )
            print(f"{model}: {versions or 'no versions'}")
            healthy[model] = any(s.available for s in statuses)
    split_ready = all(healthy.get(m) for m in contract.SPLIT_MODELS)
    if split_ready or healthy.get(contract.TEXT_TO_IMAGE):
        return 0
    print("sd-client: error: no complete set of models is available", file=sys.stderr)
    return EXIT_ERROR


def _announcer(elapsed, what):
    """generate()'s on_start: start the elapsed-time line, saying which models make the images."""
    return lambda models: elapsed.start(f"{what} with {_route_text(models)}")


def _route_text(models):
    """How generate() will make the images, for the line printed while waiting (ASCII: any terminal encoding)."""
    if models == (contract.TEXT_TO_IMAGE,):
        return f"{contract.TEXT_TO_IMAGE} (one request)"
    return f"{' -> '.join(models)} (three requests)"


def grid(images):
    """Images in a near-square grid, row by row."""
    columns = math.ceil(math.sqrt(len(images)))
    return _tile([images[i : i + columns] for i in range(0, len(images), columns)], captions=None)


def side_by_side(rows):
    """One row of images per (caption, images), the caption above it."""
    return _tile([images for _, images in rows], captions=[caption for caption, _ in rows])


def _tile(rows, captions):
    from PIL import Image, ImageDraw

    width, height = rows[0][0].size
    caption_height = 20 if captions else 0
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * width, len(rows) * (height + caption_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * (height + caption_height)
        if captions:
            draw.text((4, top + 4), captions[r], fill="black")
        for c, image in enumerate(row):
            sheet.paste(image.convert("RGB"), (c * width, top + caption_height))
    return sheet


class _Elapsed:
    """Elapsed seconds on stderr from start(what) on (rewritten in place on a terminal), then the total.
    Nothing is printed when the work fails before it starts (the error says enough)."""

    def __init__(self):
        self._what = None
        self._started = None
        self._done = threading.Event()
        self._ticker = None

    def __enter__(self):
        return self

    def start(self, what):
        self._what, self._started = what, time.monotonic()
        if sys.stderr.isatty():
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        else:
            print(f"{what}...", file=sys.stderr, flush=True)

    def _tick(self):
        while not self._done.wait(0.5):
            print(f"\r{self._what}... {time.monotonic() - self._started:.0f} s", end="", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._started is not None:
            print(f"\r{self._what}: {time.monotonic() - self._started:.1f} s", file=sys.stderr, flush=True)


def _one_line(error):
    return " ".join(str(error).split())


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sd-client: warning: {_one_line(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
