"""Transports: REST, gRPC or in-process, picked by the URL's scheme. Each is imported only when chosen, so that
`import sd_client` loads neither grpc nor TensorFlow."""

import urllib.parse

from ..errors import ValidationError

DEFAULT_GRPC_PORT = 8500  # TF Serving's
DEFAULT_MODELS_DIR = "models"


def open_transport(url=None, *, models_dir=None, timeout=600.0, retries=3, ca_file=None):
    """http(s):// -> REST, grpc(s):// -> gRPC, a folder or config file path or nothing -> in-process (models_dir or
    ./models; see local.py for what a folder and a config file serve).
    ca_file: PEM certificates to trust for https:// and grpcs:// instead of the system's (a private CA)."""
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
    raise ValidationError(f"{url}: unsupported URL scheme {scheme!r} (use http, https, grpc, grpcs or a folder path)")


def _read_ca_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValidationError(f"cannot read the CA file {path}: {e.strerror}") from e
