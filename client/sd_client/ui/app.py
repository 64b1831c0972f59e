"""One app on one port: the Gradio page at / and AUTOMATIC1111's API at /sdapi/v1/ (as A1111 serves them with --api).

Gradio is mounted on a FastAPI app and served by uvicorn, both of which come with Gradio. The page loads nothing from
the internet (Gradio's default theme ships its fonts) and sends no analytics; no share link is ever made: this is
not Gradio's launch(), which alone can open one.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio is imported: it reads this at import

import fastapi  # noqa: E402
import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402

from .a1111 import api_router, install_error_handlers  # noqa: E402
from .page import build_page  # noqa: E402
from .studio import Studio  # noqa: E402

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
API_PREFIX = "/sdapi/v1"


def build_app(client, *, labels=(), host=DEFAULT_HOST, port=DEFAULT_PORT):
    """The FastAPI app: API routes first (so / does not shadow them), then the page."""
    studio = Studio(client, labels)
    studio.choices()  # fail now, with the server's message, if nothing can be served
    app = fastapi.FastAPI(title="Stable Diffusion on TF Serving: AUTOMATIC1111 API")
    app.include_router(api_router(studio), prefix=API_PREFIX)
    install_error_handlers(app)
    return gr.mount_gradio_app(
        app, build_page(studio), path="/", server_name=host, server_port=port, ssr_mode=False, footer_links=["api"]
    )


def serve(client, *, labels=(), host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Serve until interrupted."""
    app = build_app(client, labels=labels, host=host, port=port)
    print(f"sd-client ui: the page on http://{host}:{port}/, the A1111 API on http://{host}:{port}{API_PREFIX}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
