"""Start-up, serving and shutdown: load every model, open gRPC and REST, stop cleanly on SIGINT/SIGTERM."""

import logging
import signal
import threading

import waitress

from sd_serving import grpc_service
from sd_serving.core import ModelRegistry
from sd_serving.rest import RestApp

log = logging.getLogger(__name__)

REQUEST_THREADS = 8  # per API; requests share the sessions, which are thread-safe
SHUTDOWN_GRACE_SECONDS = 10


class _Stop(SystemExit):
    """Raised in the main thread by SIGINT/SIGTERM. A SystemExit, because waitress's event loop re-raises only
    SystemExit/KeyboardInterrupt from its handlers (anything else would be logged and swallowed) and stops on it."""


def serve(options, plans):
    """Run until SIGINT/SIGTERM. `options`: the parsed command line (cli.parse_flags); `plans`: its config's models
    (config.plan_models), read once by the command line, which also picks the weight cache from them."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    registry = None
    grpc_server = rest_server = None
    try:
        registry = ModelRegistry.load(plans, enable_warmup=options.enable_model_warmup)
        log.info("Loaded %s", ", ".join(f"{name} {sorted(registry.versions[name])}" for name in registry.model_names()))
        grpc_server = grpc_service.create_server(registry, options.host, options.port, REQUEST_THREADS)
        if options.rest_api_port:
            rest_server = create_rest_server(registry, options)
        grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", options.host, options.port)
        if rest_server:
            log.info("Exporting HTTP/REST API at:%s:%d ...", options.host, options.rest_api_port)
            rest_server.run()  # returns once _Stop reaches it
        else:
            threading.Event().wait()
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _shutdown(grpc_server, rest_server, registry)


def create_rest_server(registry, options):
    try:
        return waitress.create_server(
            RestApp(registry, options.rest_api_timeout_in_ms),
            host=options.host,
            port=options.rest_api_port,
            threads=REQUEST_THREADS,
            ident="sd-model-server",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as error:
        raise OSError(f"cannot listen for REST on {options.host}:{options.rest_api_port}: {error.strerror}") from None


def _raise_stop(signum, frame):
    log.info("Received %s, shutting down", signal.Signals(signum).name)
    raise _Stop()


def _shutdown(grpc_server, rest_server, registry):
    if rest_server is not None:
        rest_server.close()
    if grpc_server is not None:
        grpc_server.stop(SHUTDOWN_GRACE_SECONDS).wait()
    if registry is not None:
        registry.close()
    log.info("Server stopped")
