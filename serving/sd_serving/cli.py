"""sd-model-server: the command line of tensorflow_model_server, for the flags the local server supports.

Flags keep tensorflow_model_server's names, defaults and meanings (--rest_api_port=0 turns REST off, as there);
`--flag=value` and `--flag value` both work, booleans take true/false. --host is the one extra flag: the local server
binds 127.0.0.1 unless told otherwise (TF Serving has no authentication). Any other flag is refused by name.
"""

import argparse
import logging
import os
import sys

from sd_serving import cpu_support, weight_cache

DEFAULT_GRPC_PORT = 8500  # tensorflow_model_server's defaults
DEFAULT_REST_API_PORT = 0
DEFAULT_REST_API_TIMEOUT_MS = 30000
DEFAULT_HOST = "127.0.0.1"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_bool(text):
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def port_number(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sd-model-server",
        description="Serve the SavedModels of a TF Serving model config over TF Serving's REST and gRPC API "
        "(a local stand-in for tensorflow_model_server).",
        allow_abbrev=False,  # tensorflow_model_server takes whole flag names only
        epilog=f"environment: {weight_cache.VARIABLE}=1 caches oneDNN's reordered weights: faster on a CPU, "
        "several times the memory; unset, it is on only for one half-precision version (README, CPU speed)",
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_GRPC_PORT, help="gRPC port (default 8500)")
    parser.add_argument(
        "--rest_api_port", type=port_number, default=DEFAULT_REST_API_PORT,
        help="HTTP/REST port; 0 (the default, as in tensorflow_model_server) exports no REST API",
    )  # fmt: skip
    parser.add_argument(
        "--model_config_file", required=True,
        help="ModelServerConfig text proto; base paths under /models/ missing on this machine are taken relative "
        "to the file's folder",
    )  # fmt: skip
    parser.add_argument(
        "--rest_api_timeout_in_ms", type=non_negative_int, default=DEFAULT_REST_API_TIMEOUT_MS,
        help="session-run timeout of REST calls in ms (0 = none; default 30000): past it, 504 DEADLINE_EXCEEDED",
    )  # fmt: skip
    parser.add_argument(
        "--enable_model_warmup", type=parse_bool, nargs="?", const=True, default=True, metavar="true|false",
        help="run assets.extra/tf_serving_warmup_requests at load (default true)",
    )  # fmt: skip
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind both APIs to (default 127.0.0.1)")
    return parser


def parse_flags(argv=None):
    parser = build_parser()
    options, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
        if flags:
            parser.error(
                f"unsupported flag(s): {', '.join(flags)} (the local server supports --port, --rest_api_port, "
                "--model_config_file, --rest_api_timeout_in_ms, --enable_model_warmup and --host)"
            )
        parser.error(f"unexpected argument(s): {' '.join(unknown)}")
    if options.port == 0:
        parser.error("--port must be set: the local server always exports the gRPC API")
    if options.rest_api_port and options.rest_api_port == options.port:
        parser.error(f"--rest_api_port and --port must differ (both {options.port})")
    return options


def main(argv=None):
    options = parse_flags(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        weight_cache.check_setting(os.environ)
    except ValueError as error:
        print(f"sd-model-server: {error}", file=sys.stderr)
        return 2
    from sd_serving.config import ConfigError, plan_models

    try:
        plans = plan_models(options.model_config_file)
    except ConfigError as error:
        print(f"sd-model-server: {error}", file=sys.stderr)
        return 1
    versions = [plan.version_path(version) for plan in plans for version in plan.versions]
    value, caching = weight_cache.weight_caching(versions, os.environ)
    if value is not None:
        os.environ[weight_cache.VARIABLE] = value  # before TensorFlow is imported, so that every kernel reads it
    logging.getLogger("sd_serving").info("%s", caching)
    emulated = cpu_support.emulated_bfloat16_warning(versions)
    if emulated:
        logging.getLogger("sd_serving").warning("%s", emulated)
    # Imported after the flags are checked: TensorFlow takes seconds to import.
    from sd_serving.servable import LoadError
    from sd_serving.server import serve

    try:
        serve(options, plans)
    except (LoadError, OSError) as error:
        print(f"sd-model-server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
