"""The client: prompt -> tokens -> context -> latent -> PNG over any transport.

    client = Client("http://127.0.0.1:8501")      # or "grpc://127.0.0.1:8500", or a folder / None: in-process
    results = client.generate("a red fox", num_images=2, seed=42)
    results[1].seed == 43; results[1].save("fox.png")

With a `text_to_image` model served, generate() makes one request; otherwise it chains text_encoder,
diffusion_model and decoder (the decoder's `png` signature, so images travel as PNG). Both give the same images for
the same arguments. Every argument is checked before anything is sent.
"""

import dataclasses

import numpy as np

from . import contract, png
from .errors import DeadlineExceeded, InvalidArgument, NotFound, ServingError, Unavailable, ValidationError
from .inputs import (
    canonical_sampler, check_guidance, check_int, check_version, max_steps, negative_prompt_list, prompt_list,
    resolve_seeds,
)  # fmt: skip
from .results import GenerationResult
from .tokenizer import ClipTokenizer
from .transports import open_transport

DEFAULT_NUM_STEPS = 50
DEFAULT_GUIDANCE_SCALE = 7.5
MODEL_HASH_DIGITS = 10  # the SD UIs' "Model hash": the start of the checkpoint file's sha256
DEFAULT_TIMEOUT = 600.0  # seconds: 50 steps at 512² take seconds on a GPU, minutes on a CPU


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A checked generate() call, one entry per image."""

    prompts: list
    negative_prompts: list
    seeds: list
    num_steps: int
    guidance_scale: float
    version: int | None
    label: str | None
    sampler: str


class Client:
    def __init__(
        self,
        url=None,
        *,
        models_dir=None,
        timeout=DEFAULT_TIMEOUT,
        retries=3,
        max_images=contract.DEFAULT_MAX_BATCH,
        vocab_path=None,
        strict_prompts=False,
        text_to_image="auto",
        ca_file=None,
        transport=None,
    ):
        """url: http(s)://HOST:PORT (REST), grpc(s)://HOST:PORT (gRPC), a model folder or None (in-process, ./models),
        or one config file in it (in-process, only the models it lists: models.config the chain, text_to_image.config
        the one-request model).
        Several servers: a list of URLs (or one string with commas) spreads the requests round-robin over replicas
        and retries a request a replica could not take (UNAVAILABLE, refused connection) on the next one;
        {model: URL or [URLs]} sends each model to its own servers; dns:///HOST:PORT lets gRPC balance round-robin
        over every address HOST resolves to (a Kubernetes headless Service). See transports/replicas.py.
        text_to_image: "auto" (generate() uses it when served), True (require it) or False (always the chain).
        ca_file: PEM certificates to trust for https:// / grpcs:// (a private CA) instead of the system's."""
        if text_to_image not in ("auto", True, False):
            raise ValidationError(f"text_to_image must be 'auto', True or False, not {text_to_image!r}")
        check_int("max_images", max_images, 1, None)
        self.transport = transport or open_transport(
            url, models_dir=models_dir, timeout=timeout, retries=retries, ca_file=ca_file
        )
        self.max_images = max_images
        self.strict_prompts = strict_prompts
        self.text_to_image = text_to_image
        self._vocab_path = vocab_path
        self._tokenizer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.transport.close()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = ClipTokenizer(self._vocab_path)
        return self._tokenizer

    # --- the whole chain -------------------------------------------------------------------------------------------

    def generate(
        self,
        prompt,
        negative_prompt=None,
        num_images=1,
        num_steps=DEFAULT_NUM_STEPS,
        guidance_scale=DEFAULT_GUIDANCE_SCALE,
        seed=None,
        version=None,
        label=None,
        on_start=None,
        sampler=contract.DEFAULT_SAMPLER,
    ):
        """Images for a prompt or a list of prompts (num_images each, prompt by prompt).

        seed: None (drawn at random), an int (image i gets seed + i, so each image can be made again alone) or a
        list with one seed per image. Returns one GenerationResult per image, in order.
        sampler: one of contract.SAMPLERS ("DDIM", "DPM++ 2M", "DPM++ 2M Karras", "Euler", "Euler a"), case ignored;
        DDIM (KerasCV's) by default. See samplers() for what a served version offers.

        One request to text_to_image when it serves this version or label (with neither: when its latest version is
        the chain's latest too), else the text_encoder -> diffusion_model -> decoder chain; see the constructor's
        text_to_image argument. Each result's `model` says which: "text_to_image" or "diffusion_model".
        on_start: called with the models about to run (("text_to_image",) or the three split models in chain order)
        after every check, before the first prediction request (the CLI prints it while it waits)."""
        plan = self._plan(prompt, negative_prompt, num_images, num_steps, guidance_scale, seed, version, label, sampler)
        model, statuses = self._route(plan.version, plan.label)
        if on_start is not None:
            on_start((contract.TEXT_TO_IMAGE,) if model == contract.TEXT_TO_IMAGE else contract.SPLIT_MODELS)
        if model == contract.TEXT_TO_IMAGE:
            pngs = self._generate_in_one_request(plan)
        else:
            pngs = self._generate_by_chain(plan)
        model_version = self._version_text(model, plan.version, plan.label, statuses)
        made_by = self.provenance(model, version=plan.version, label=plan.label)
        return [self._result(plan, i, data, model, model_version, made_by) for i, data in enumerate(pngs)]

    def _route(self, version, label):
        """(model generate() uses: text_to_image or diffusion_model for the chain, statuses of its available versions
        or None when not asked).

        Asked on every generate() (a status call or two, milliseconds) so that a model added or removed on the server
        is followed without restarting the client."""
        statuses = self._text_to_image_statuses(version, label)
        if not statuses:
            return contract.DIFFUSION_MODEL, None
        if self.text_to_image == "auto" and version is None and label is None and self._chain_is_newer(statuses):
            return contract.DIFFUSION_MODEL, None
        return contract.TEXT_TO_IMAGE, statuses

    def _generate_by_chain(self, plan):
        prompts = list(dict.fromkeys(zip(plan.prompts, plan.negative_prompts)))  # each prompt pair encoded once
        context, unconditional = self.encode_text(
            [p for p, _ in prompts], [n for _, n in prompts], version=plan.version, label=plan.label
        )
        rows = [prompts.index(pair) for pair in zip(plan.prompts, plan.negative_prompts)]
        latent = self.diffuse(
            context[rows],
            unconditional[rows],
            num_steps=plan.num_steps,
            guidance_scale=plan.guidance_scale,
            seed=plan.seeds,
            version=plan.version,
            label=plan.label,
            sampler=plan.sampler,
        )
        return self.decode(latent, version=plan.version, label=plan.label)

    def _generate_in_one_request(self, plan):
        self._warn_long_prompts(plan.prompts + [n for n in plan.negative_prompts if n])
        inputs = {
            "prompt": _strings(plan.prompts),
            "negative_prompt": _strings([n or "" for n in plan.negative_prompts]),
            "num_steps": np.int32(plan.num_steps),
            "guidance_scale": np.float32(plan.guidance_scale),
            "seed": np.asarray(plan.seeds, np.int32),
        }
        signature = self._seeded_signature(contract.TEXT_TO_IMAGE, inputs, plan.sampler, plan.version, plan.label)
        outputs = self.transport.predict(
            contract.TEXT_TO_IMAGE, signature, inputs, version=plan.version, label=plan.label
        )
        return list(outputs["images_bytes"].reshape(-1))

    def _warn_long_prompts(self, prompts):
        """text_to_image cuts long prompts in its graph as the chain's tokenizer cuts them, but silently: warn here
        (or refuse, with strict_prompts) as the chain does."""
        for prompt in dict.fromkeys(prompts):  # each prompt once: one warning per prompt, not per image
            self.tokenizer.tokenize(prompt, strict=self.strict_prompts)

    def _chain_is_newer(self, text_to_image_statuses):
        """True when the split models serve a later version than text_to_image (an export made with
        --no-text-to-image after one with it): "no version" then means that later version, as it does on the chain."""
        try:
            chain = self.transport.model_status(contract.DIFFUSION_MODEL)
        except (NotFound, InvalidArgument):
            return False
        chain_latest = max((s.version for s in chain if s.available), default=None)
        return chain_latest is not None and chain_latest > max(s.version for s in text_to_image_statuses)

    def _text_to_image_statuses(self, version, label):
        """text_to_image's available versions when generate() may use it, else an empty list."""
        if self.text_to_image is False:
            return []
        try:
            statuses = self.transport.model_status(contract.TEXT_TO_IMAGE, version=version, label=label)
        except (NotFound, InvalidArgument):  # not served, or not under this version / label
            if self.text_to_image is True:
                raise
            return []
        available = [s for s in statuses if s.available]
        if not available and self.text_to_image is True:
            raise Unavailable(f"{contract.TEXT_TO_IMAGE} has no available version", model=contract.TEXT_TO_IMAGE)
        return available

    def _version_text(self, model, version, label, statuses=None):
        """What the PNG metadata names as the model version: the label, the version, or the latest one served."""
        if label is not None:
            return label
        if version is not None:
            return str(version)
        if statuses is None:
            try:
                statuses = self.transport.model_status(model)
            except ServingError:
                statuses = []
        available = [s.version for s in statuses if s.available]
        return str(max(available)) if available else "latest"

    def _result(self, plan, index, data, model, model_version, made_by):
        width, height = png.size_of(data)
        fields = dict(
            prompt=plan.prompts[index],
            negative_prompt=plan.negative_prompts[index],
            num_steps=plan.num_steps,
            guidance_scale=plan.guidance_scale,
            seed=plan.seeds[index],
            width=width,
            height=height,
            model=model,
            model_version=model_version,
            model_hash=made_by.get("source_sha256", "")[:MODEL_HASH_DIGITS] or None,
            precision=made_by.get("precision") or None,
            sampler=plan.sampler,
        )
        tagged = png.with_text(data, png.PARAMETERS_KEY, png.parameters_text(**fields))
        return GenerationResult(png=tagged, **fields)

    def _seeded_signature(self, model, inputs, sampler, version, label):
        """with_sampler for every sampler, DDIM too (bit-equal to serving_default): with oneDNN's weight cache on,
        each signature a server runs holds its own reordered copy of the U-Net's weights, and the exported warmup
        warms this one. DDIM falls back to serving_default on an export older than with_sampler: one metadata call,
        asked per request (not cached) so that a rollback on the server is followed, as _route follows it."""
        if sampler == contract.DEFAULT_SAMPLER:
            if contract.SAMPLER_SIGNATURE not in self.transport.signatures(model, version=version, label=label):
                return contract.DEFAULT_SIGNATURE
        _add_sampler_input(inputs, sampler)
        return contract.SAMPLER_SIGNATURE

    # --- the three steps, for custom chains -------------------------------------------------------------------------

    def encode_text(self, prompts, negative_prompts=None, *, version=None, label=None):
        """(context, unconditional_context), float32 [P, 77, 768] each, for one prompt or a list of prompts.
        A negative prompt of None (or none given) is KerasCV's unconditional row."""
        prompts = prompt_list("prompt", prompts)
        negative_prompts = negative_prompt_list(negative_prompts, len(prompts))
        check_version(version, label)
        tokens = self.tokenizer.tokenize_batch(prompts, strict=self.strict_prompts)
        negative_tokens = self.tokenizer.tokenize_batch(negative_prompts, strict=self.strict_prompts)
        outputs = self.transport.predict(
            contract.TEXT_ENCODER,
            contract.DEFAULT_SIGNATURE,
            {"tokens": tokens, "negative_tokens": negative_tokens},
            version=version,
            label=label,
        )
        return outputs["context"], outputs["unconditional_context"]

    def diffuse(
        self,
        context,
        unconditional_context,
        *,
        num_steps=DEFAULT_NUM_STEPS,
        guidance_scale=DEFAULT_GUIDANCE_SCALE,
        seed=None,
        initial_latent=None,
        version=None,
        label=None,
        sampler=contract.DEFAULT_SAMPLER,
    ):
        """The guided sampling loop: latent float32 [B, H/8, W/8, 4]. The start noise comes from a seed per image
        (seed: None, an int for seed + i, or a list) or from initial_latent (unit-variance noise; the `from_noise`
        signatures). sampler: as in generate(); every sampler goes to with_sampler, or with initial_latent to
        with_sampler_from_noise, where the seeds (drawn at random when None) give Euler a's per-step noise; DDIM
        from an initial_latent goes to from_noise, and from a seed to serving_default on an export without
        with_sampler."""
        sampler = canonical_sampler(sampler)
        context = _float_tensor("context", context, 3)
        unconditional_context = _float_tensor("unconditional_context", unconditional_context, 3)
        batch = context.shape[0]
        if unconditional_context.shape != context.shape:
            raise ValidationError(
                f"unconditional_context has shape {unconditional_context.shape}, context {context.shape}"
            )
        self._check_batch(batch)
        check_int("num_steps", num_steps, 1, max_steps(sampler))
        check_guidance(guidance_scale)
        check_version(version, label)
        inputs = {
            "context": context,
            "unconditional_context": unconditional_context,
            "num_steps": np.int32(num_steps),
            "guidance_scale": np.float32(guidance_scale),
        }
        if initial_latent is not None:
            if seed is not None and sampler == contract.DEFAULT_SAMPLER:
                raise ValidationError("give either seed or initial_latent, not both (DDIM draws no noise after the start)")
            inputs["initial_latent"] = _float_tensor("initial_latent", initial_latent, 4)
            if inputs["initial_latent"].shape[0] != batch:
                raise ValidationError(f"initial_latent has {inputs['initial_latent'].shape[0]} rows, context {batch}")
            if sampler != contract.DEFAULT_SAMPLER:
                inputs["seed"] = np.asarray(resolve_seeds(seed, batch), np.int32)
            signature = _from_noise_signature(inputs, sampler)
        else:
            inputs["seed"] = np.asarray(resolve_seeds(seed, batch), np.int32)
            signature = self._seeded_signature(contract.DIFFUSION_MODEL, inputs, sampler, version, label)
        outputs = self.transport.predict(contract.DIFFUSION_MODEL, signature, inputs, version=version, label=label)
        return outputs["latent"]

    def decode(self, latent, *, version=None, label=None, as_png=True):
        """Latent -> images: a list of PNG bytes (the decoder's `png` signature), or with as_png=False a uint8 array
        [B, H, W, 3] (its `serving_default`)."""
        latent = _float_tensor("latent", latent, 4)
        self._check_batch(latent.shape[0])
        check_version(version, label)
        if as_png:
            outputs = self.transport.predict(
                contract.DECODER, contract.PNG_SIGNATURE, {"latent": latent}, version=version, label=label
            )
            return list(outputs["images_bytes"].reshape(-1))
        outputs = self.transport.predict(
            contract.DECODER, contract.DEFAULT_SIGNATURE, {"latent": latent}, version=version, label=label
        )
        return outputs["images"]

    # --- introspection ----------------------------------------------------------------------------------------------

    def health(self, models=(*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE)):
        """model -> list of VersionStatus, or the ServingError the server gave for it (e.g. NotFound).
        An unreachable server raises Unavailable (or DeadlineExceeded) at once instead of being asked once per model."""
        report = {}
        for model in models:
            try:
                report[model] = self.transport.model_status(model)
            except (Unavailable, DeadlineExceeded):
                raise
            except ServingError as e:
                report[model] = e
        return report

    def provenance(self, model=contract.DIFFUSION_MODEL, *, version=None, label=None):
        """How the served version was made: {key: str} for contract.PROVENANCE_KEYS (precision, source_format,
        source_sha256; "" where unknown), or {} for a version exported without a `provenance` signature."""
        if contract.PROVENANCE_SIGNATURE not in self.signatures(model, version=version, label=label):
            return {}
        keys = list(contract.PROVENANCE_KEYS)
        outputs = self.transport.predict(
            model, contract.PROVENANCE_SIGNATURE, {"key": _strings(keys)}, version=version, label=label
        )
        return {key: bytes(value).decode("utf-8") for key, value in zip(keys, outputs["value"].reshape(-1))}

    def samplers(self, *, version=None, label=None):
        """The samplers the served version offers (to generate() with the same version / label): all of
        contract.SAMPLERS, or ["DDIM"] for an export made before the with_sampler signatures existed."""
        check_version(version, label)
        model, _ = self._route(version, label)
        if contract.SAMPLER_SIGNATURE in self.transport.signatures(model, version=version, label=label):
            return list(contract.SAMPLERS)
        return [contract.DEFAULT_SAMPLER]

    def signatures(self, model, *, version=None, label=None):
        """The model's signatures as the server describes them: {name: {"inputs": {name: (dtype, shape)}, ...}}."""
        check_version(version, label)
        return self.transport.signatures(model, version=version, label=label)

    # --- checks -----------------------------------------------------------------------------------------------------

    def _plan(
        self, prompt, negative_prompt, num_images, num_steps, guidance_scale, seed, version, label,
        sampler=contract.DEFAULT_SAMPLER,
    ):
        prompts = prompt_list("prompt", prompt)
        negatives = negative_prompt_list(negative_prompt, len(prompts))
        check_int("num_images", num_images, 1, None)
        total = len(prompts) * num_images
        self._check_batch(total)
        sampler = canonical_sampler(sampler)
        check_int("num_steps", num_steps, 1, max_steps(sampler))
        check_guidance(guidance_scale)
        check_version(version, label)
        return _Plan(
            prompts=[p for p in prompts for _ in range(num_images)],
            negative_prompts=[n for n in negatives for _ in range(num_images)],
            seeds=resolve_seeds(seed, total),
            num_steps=int(num_steps),
            guidance_scale=float(guidance_scale),
            version=None if version is None else int(version),
            label=label,
            sampler=sampler,
        )

    def _check_batch(self, count):
        if count < 1:
            raise ValidationError("nothing to generate: the batch is empty")
        if count > self.max_images:
            raise ValidationError(f"{count} images in one request, the limit is {self.max_images} (max_images)")


def _from_noise_signature(inputs, sampler):
    """DDIM from an initial latent keeps from_noise (with_sampler_from_noise would want seeds that DDIM never uses); the
    others add the `sampler` input."""
    if sampler == contract.DEFAULT_SAMPLER:
        return contract.FROM_NOISE_SIGNATURE
    _add_sampler_input(inputs, sampler)
    return contract.SAMPLER_FROM_NOISE_SIGNATURE


def _add_sampler_input(inputs, sampler):
    """The with_sampler signatures' `sampler` input: a scalar string, the name as contract.SAMPLERS spells it."""
    inputs["sampler"] = np.array(sampler.encode("ascii"), dtype=object)


def _float_tensor(name, value, rank):
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != rank:
        raise ValidationError(f"{name} must have {rank} dimensions, got shape {array.shape}")
    return array


def _strings(values):
    array = np.empty(len(values), dtype=object)
    array[:] = [v.encode("utf-8") for v in values]
    return array
