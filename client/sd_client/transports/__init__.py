"""Transports: REST, gRPC or in-process, picked by the URL's scheme. Each is imported only when chosen, so that
`import sd_client` loads neither grpc nor TensorFlow.

Several endpoints (replicas.py): a list (or a comma-separated string) of URLs spreads requests over equivalent
replicas with failover; a dict {model: URLs} routes each model to its own servers (the split layout)."""

import urllib.parse

from ..errors import ValidationError

DEFAULT_GRPC_PORT = 8500  # TF Serving's
DEFAULT_MODELS_DIR = "models"
# gRPC's own name-resolver schemes: the target goes to gRPC as it is, balanced with its round_robin policy over every
# address the name resolves to (a Kubernetes headless Service: one A record per ready pod).
GRPC_TARGET_SCHEMES = ("dns", "ipv4", "ipv6")


def open_transport(url=None, *, models_dir=None, timeout=600.0, retries=3, ca_file=None):
    """http(s):// -> REST, grpc(s):// -> gRPC, dns:///HOST:PORT (and ipv4:/ipv6: address lists) -> gRPC balanced
    round-robin by gRPC itself, a folder or config file path or nothing -> in-process (models_dir or ./models; see
    local.py for what a folder and a config file serve). Several URLs (a list, or one string with commas): replicas;
    a dict {model: URL or URLs}: each model on its own endpoints.
    ca_file: PEM certificates to trust for https:// and grpcs:// instead of the system's (a private CA)."""
    options = dict(timeout=timeout, retries=retries, ca_file=ca_file)
    if isinstance(url, dict):
        from .replicas import RoutedTransport

        if not url:
            raise ValidationError("the endpoint map is empty: give {model: URL or [URLs]}")
        return RoutedTransport({model: _replicas(urls, options) for model, urls in url.items()})
    if isinstance(url, (list, tuple)) or (isinstance(url, str) and "," in url and "://" in url):
        return _replicas(url, options)
    return _open_one(url, models_dir=models_dir, **options)


def split_urls(urls):
    """A list of URLs from a URL, a comma-separated string or a list of either; empty entries are refused."""
    items = [urls] if isinstance(urls, str) else list(urls)
    found = [part.strip() for item in items for part in str(item).split(",")]
    if not found or not all(found):
        raise ValidationError(f"empty endpoint in {urls!r}: give URLs separated by commas")
    for url in found:
        if "://" not in url and not _is_grpc_target(url):
            raise ValidationError(f"{url}: several endpoints must all be server URLs (http, https, grpc, grpcs, dns)")
    return found


def _replicas(urls, options):
    """One transport for one URL; a ReplicatedTransport over several, whose replicas fail fast (no library retries:
    the next replica is the retry)."""
    found = split_urls(urls)
    if len(found) == 1:
        return _open_one(found[0], **options)
    from .replicas import ReplicatedTransport

    transports = [_open_one(url, **dict(options, retries=0)) for url in found]
    return ReplicatedTransport(transports, retries=options["retries"])


def _is_grpc_target(url):
    return url.split(":", 1)[0].lower() in GRPC_TARGET_SCHEMES and ":" in url


def _open_one(url=None, *, models_dir=None, timeout=600.0, retries=3, ca_file=None):
    if url is not None and _is_grpc_target(str(url)):
        from .grpc_api import GrpcTransport

        return GrpcTransport(str(url), timeout=timeout, retries=retries, balanced=True)
    if url is None or "://" not in str(url):
        from .local import LocalTransport

        return LocalTransport(url or models_dir or DEFAULT_MODELS_DIR)
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        from .rest import RestTransport

        return RestTransport(url, timeout=timeout, retries=retries, ca_file=ca_file)
    if scheme in ("grpc", "grpcs"):
        from .grpc_api import GrpcTransport

        if not parsed.hostname:
            raise ValidationError(f"{url}: no host (expected grpc://HOST:PORT)")
        if parsed.path not in ("", "/"):
            raise ValidationError(f"{url}: a gRPC URL has no path (expected grpc://HOST:PORT)")
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        target = f"{host}:{parsed.port or DEFAULT_GRPC_PORT}"
        root_certificates = _read_ca_file(ca_file) if ca_file else None
        return GrpcTransport(
            target, secure=scheme == "grpcs", timeout=timeout, retries=retries, root_certificates=root_certificates
        )
    raise ValidationError(
        f"{url}: unsupported URL scheme {scheme!r} (use http, https, grpc, grpcs, dns or a folder path)"
    )


def _read_ca_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValidationError(f"cannot read the CA file {path}: {e.strerror}") from e
