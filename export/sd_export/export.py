"""One export: KerasCV components -> servables -> a new, consistent version of every model in the repository."""

import time

from sd_export import contract, repository
from sd_export.decoder import DecoderServable
from sd_export.diffusion_model import DiffusionModelServable
from sd_export.text_encoder import TextEncoderServable


def servables_for(components, height, width, max_batch):
    return {
        contract.TEXT_ENCODER: TextEncoderServable(components.text_encoder, max_batch),
        contract.DIFFUSION_MODEL: DiffusionModelServable(components.diffusion_model, height, width, max_batch),
        contract.DECODER: DecoderServable(components.decoder, height, width, max_batch),
    }


def export_repository(
    components,
    models_dir,
    height,
    width,
    version=None,
    label=None,
    max_batch=contract.DEFAULT_MAX_BATCH,
    provenance=None,
):
    """Export the components as one version of text_encoder, diffusion_model and decoder. Returns the version."""
    contract.check_resolution(height, width)
    if not 1 <= max_batch <= contract.MAX_MAX_BATCH:
        raise ValueError(f"max batch {max_batch} is not supported: use 1..{contract.MAX_MAX_BATCH}")
    repository.check_label(label)
    servables = servables_for(components, height, width, max_batch)
    version = repository.choose_version(models_dir, servables, version)
    started = time.monotonic()
    repository.write_version(
        servables, models_dir, version, label, height, width, max_batch, dict(provenance or {}, version=version)
    )
    return version, time.monotonic() - started
