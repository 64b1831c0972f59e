"""The web page and the AUTOMATIC1111 API over sd_client (`sd-client ui`; needs `pip install "./client[ui]"`).

The only part of sd_client that imports Gradio.
"""

from .app import DEFAULT_HOST, DEFAULT_PORT, build_app, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "build_app", "serve"]
