"""AUTOMATIC1111's txt2img API (the part text-to-image tools use), under /sdapi/v1/, with A1111's field names.

    POST /sdapi/v1/txt2img    prompt, negative_prompt, steps, cfg_scale, seed (-1 random), batch_size, n_iter,
                              width/height (the export's size only), sampler_name; override_settings.sd_model_checkpoint
    GET  /sdapi/v1/sd-models  the served versions and labels
    GET  /sdapi/v1/options    {"sd_model_checkpoint": the current one};  POST it to choose another
    GET  /sdapi/v1/samplers   the samplers the current checkpoint offers

Unknown fields are ignored, as A1111's pydantic models ignore them; an invalid value is a 422 with a message. An error
of the model server keeps its meaning (404 not found, 503 unavailable, ...) and its message; never a bare 500.
"""

import base64
import json
import threading

import fastapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import contract
from ..client import DEFAULT_NUM_STEPS
from ..inputs import resolve_seeds
from ..contract import DEFAULT_SAMPLER
from ..errors import SdClientError, ServingError
from .models import find_choice

MAX_N_ITER = 16  # batches per request (each at most the client's max_images): a cap, as on steps and batch size
A1111_CFG_SCALE = 7.0  # A1111's default, kept for requests that leave it out

# A model server's status code -> this API's HTTP status: the caller's mistakes 4xx, the server's trouble 5xx.
# Anything not listed (INTERNAL, UNKNOWN, DATA_LOSS, ...) is 502: the model server failed, not this gateway.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 422,
    "OUT_OF_RANGE": 422,
    "FAILED_PRECONDITION": 409,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
BAD_GATEWAY = 502
UNPROCESSABLE = 422


class Txt2ImgRequest(BaseModel):
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = Field(DEFAULT_NUM_STEPS, ge=1, le=contract.MAX_NUM_STEPS)
    cfg_scale: float = Field(A1111_CFG_SCALE, allow_inf_nan=False)
    seed: int = Field(-1, ge=-1, le=contract.MAX_SEED)
    batch_size: int = Field(1, ge=1)
    n_iter: int = Field(1, ge=1, le=MAX_N_ITER)
    width: int | None = Field(None, description="the export's width; other sizes are refused")
    height: int | None = Field(None, description="the export's height; other sizes are refused")
    sampler_name: str | None = None
    sampler_index: str | None = Field(None, description="A1111's older name for sampler_name")
    override_settings: dict = Field(default_factory=dict)


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs, each with its parameters text chunk")
    parameters: dict
    info: str = Field(description="JSON text: the seeds and settings, as A1111 writes it")


class SDModelItem(BaseModel):
    model_config = {"protected_namespaces": ()}
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str] = []
    options: dict = {}


class Options(BaseModel):
    sd_model_checkpoint: str | None = None


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def api_router(studio):
    """The /sdapi/v1 routes over a Studio; the checkpoint chosen with POST options is kept for this process."""
    router = fastapi.APIRouter()
    current = {"title": None}  # None: the latest served version
    current_lock = threading.Lock()

    def current_choice():
        choices = studio.choices()
        with current_lock:
            title = current["title"]
        return find_choice(choices, title) if title is not None else choices[0]

    @router.post("/txt2img", response_model=Txt2ImgResponse)
    def txt2img(request: Txt2ImgRequest):
        checkpoint = request.override_settings.get("sd_model_checkpoint")
        choice = find_choice(studio.choices(), checkpoint) if checkpoint else current_choice()
        sampler = studio.sampler(request.sampler_name or request.sampler_index or DEFAULT_SAMPLER, choice)
        total = request.batch_size * request.n_iter
        seeds = resolve_seeds(None if request.seed == -1 else request.seed, total)
        results = []
        for start in range(0, total, request.batch_size):
            results += studio.generate(
                request.prompt,
                request.negative_prompt or None,
                request.batch_size,
                request.steps,
                request.cfg_scale,
                seeds[start],
                choice,
                sampler,
            )
            _check_size(request, results[0])
        return Txt2ImgResponse(
            images=[base64.b64encode(r.png).decode("ascii") for r in results],
            parameters=request.model_dump(),
            info=json.dumps(_info(request, results, choice, sampler)),
        )

    @router.get("/sd-models", response_model=list[SDModelItem])
    def sd_models():
        return [_model_item(choice) for choice in studio.choices()]

    @router.get("/options", response_model=Options)
    def get_options():
        return Options(sd_model_checkpoint=current_choice().title)

    @router.post("/options")
    def set_options(options: Options):
        if options.sd_model_checkpoint is not None:
            choice = find_choice(studio.choices(), options.sd_model_checkpoint)
            with current_lock:
                current["title"] = choice.title
        return None

    @router.get("/samplers", response_model=list[SamplerItem])
    def samplers():
        return [SamplerItem(name=name) for name in studio.samplers(current_choice().title)]

    return router


def install_error_handlers(app):
    """The client's refusals (ValidationError) as 422, model server errors by their meaning; message as `detail`."""

    @app.exception_handler(SdClientError)
    def client_error(request, error):
        if isinstance(error, ServingError):
            status, message = HTTP_STATUS.get(error.code, BAD_GATEWAY), str(error)
        else:
            status, message = UNPROCESSABLE, str(error)
        return JSONResponse({"error": type(error).__name__, "detail": message}, status_code=status)

    @app.exception_handler(ApiError)
    def api_error(request, error):
        return JSONResponse({"error": "ApiError", "detail": str(error)}, status_code=error.status)


def _check_size(request, result):
    """The exported graph makes one size: a request for another is refused rather than answered with other pixels."""
    for name, asked, made in (("width", request.width, result.width), ("height", request.height, result.height)):
        if asked is not None and asked != made:
            raise ApiError(
                UNPROCESSABLE,
                f"{name} {asked} is not available: the served export makes {result.width}x{result.height} images "
                f"(send width={result.width}, height={result.height}, or leave them out)",
            )


def _info(request, results, choice, sampler):
    """A1111's `info` fields that tools read: seeds, prompts, settings, the infotexts (each PNG's parameters)."""
    first = results[0]
    return {
        "prompt": request.prompt,
        "all_prompts": [r.prompt for r in results],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [r.negative_prompt or "" for r in results],
        "seed": first.seed,
        "all_seeds": [r.seed for r in results],
        "subseed": -1,
        "all_subseeds": [-1] * len(results),
        "width": first.width,
        "height": first.height,
        "sampler_name": sampler,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "n_iter": request.n_iter,
        "sd_model_name": choice.title,
        "sd_model_hash": None,
        "infotexts": [r.parameters for r in results],
    }


def _model_item(choice):
    name = choice.label or str(choice.version)
    return SDModelItem(title=choice.title, model_name=name, filename=f"{contract.DIFFUSION_MODEL}/{choice.version}")
