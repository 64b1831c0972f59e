"""One export: KerasCV components -> servables -> a new, consistent version of every model in the repository."""

import time

from sd_export import contract, repository
from sd_export.decoder import DecoderServable
from sd_export.diffusion_model import DiffusionModelServable
from sd_export.text_encoder import TextEncoderServable


def servables_for(components, height, width, max_batch, clip_vocab=None):
    """The split models, plus text_to_image when a CLIP vocabulary is given for its in-graph tokenizer."""
    servables = {
        contract.TEXT_ENCODER: TextEncoderServable(components.text_encoder, max_batch),
        contract.DIFFUSION_MODEL: DiffusionModelServable(components.diffusion_model, height, width, max_batch),
        contract.DECODER: DecoderServable(components.decoder, height, width, max_batch),
    }
    if clip_vocab is not None:
        from sd_export.text_to_image import TextToImageServable
        from sd_export.tokenizer_graph import ClipTokenizer

        tokenizer = ClipTokenizer(str(clip_vocab))
        servables[contract.TEXT_TO_IMAGE] = TextToImageServable(components, tokenizer, height, width, max_batch)
    return servables


def export_repository(
    components,
    models_dir,
    height,
    width,
    version=None,
    label=None,
    max_batch=contract.DEFAULT_MAX_BATCH,
    provenance=None,
    clip_vocab=None,
    precision=contract.DEFAULT_PRECISION,
    source=None,
):
    """Export the components as one version of every model (text_to_image too when clip_vocab is given).

    `precision` is recorded with the version and must be the dtype the components store their variables in
    (weights.build_components(..., precision=...)). source: where the weights came from, as strings ({"format": ...,
    "sha256": ...}, WeightSources.source()); recorded with the version as source_<key>. Returns (version, seconds)."""
    from sd_export.weights import precision_of

    contract.check_resolution(height, width)
    contract.check_precision(precision)
    if precision_of(components) != precision:
        raise ValueError(f"precision {precision} was asked for, but the components are {precision_of(components)}")
    if not 1 <= max_batch <= contract.MAX_MAX_BATCH:
        raise ValueError(f"max batch {max_batch} is not supported: use 1..{contract.MAX_MAX_BATCH}")
    repository.check_label(label)
    started = time.monotonic()
    servables = servables_for(components, height, width, max_batch, clip_vocab)
    version = repository.choose_version(models_dir, servables, version)
    provenance = dict(provenance or {}, version=version, precision=precision)
    provenance.update({f"source_{key}": value for key, value in (source or {}).items()})
    repository.write_version(servables, models_dir, version, label, height, width, max_batch, provenance)
    return version, time.monotonic() - started
