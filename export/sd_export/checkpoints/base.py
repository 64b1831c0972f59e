"""The interface every checkpoint format shares: which parts it holds, its sha256, and loading a part into KerasCV.

Parts are KerasCV's models: diffusion_model (the U-Net), text_encoder (CLIP), decoder and image_encoder (the VAE's
two halves). A safetensors-based format describes each part it holds as a PartSource (where its tensors are, under
which prefix, in which naming); loading checks the whole plan (every tensor present, every shape right, no tensor of
the part left unused) before it sets a single variable.
"""

import dataclasses
import hashlib

PARTS = ("diffusion_model", "text_encoder", "decoder", "image_encoder")
PART_NAMES = {
    "diffusion_model": "U-Net",
    "text_encoder": "text encoder",
    "decoder": "VAE decoder",
    "image_encoder": "VAE encoder",
}
# Tensors that are no part's weights, wherever they occur (after a part's prefix or at the top of an LDM file).
IGNORED_SUFFIXES = (
    # CLIP's position ids 0..76, a buffer: KerasCV feeds positions itself, and some merged checkpoints store garbage
    # (floats, shifted ids) here.
    "embeddings.position_ids",
)


class WeightsError(Exception):
    """A weights file that cannot be used; the message is one line naming the file."""


@dataclasses.dataclass
class PartSource:
    """Where one part's tensors are: a store, the prefix in front of the names, and the naming (ldm or diffusers)."""

    store: object
    prefix: str
    layout: str
    owned: tuple  # name prefixes (after `prefix`) that belong to this part: each such tensor must be used

    def owns(self, key):
        return key.startswith(self.prefix) and key[len(self.prefix) :].startswith(self.owned)


class Checkpoint:
    """A checkpoint read from safetensors: subclasses fill `sources` ({part: PartSource}) and `hashed_files`."""

    format_name = None

    def __init__(self, path, sources):
        self.path = str(path)
        self.sources = sources

    def parts(self):
        return tuple(part for part in PARTS if part in self.sources)

    def sha256(self):
        return file_sha256(self.path)

    def plan(self, part, model):
        """[(Assignment, full source key)] for every variable of `model`, checked against the headers."""
        from sd_export.checkpoints import clip_names, unet_names, vae_names

        source = self.sources[part]
        planners = {
            "diffusion_model": lambda: unet_names.plan(model, source.layout),
            "text_encoder": lambda: clip_names.plan(model),
            "decoder": lambda: vae_names.decoder_plan(model, source.layout),
            "image_encoder": lambda: vae_names.encoder_plan(model, source.layout),
        }
        plan = [(assignment, source.prefix + assignment.key) for assignment in planners[part]()]
        check_plan(plan, source, self.path, part)
        return plan

    def load_into(self, part, model):
        from sd_export.checkpoints.assign import converted

        source = self.sources[part]
        for assignment, key in self.plan(part, model):
            assignment.variable.assign(converted(source.store.get(key), assignment.kind, assignment.variable.shape))


def check_plan(plan, source, path, part):
    """Every planned tensor present with a fitting shape, each used once, and none of the part's tensors unused."""
    from sd_export.checkpoints.assign import converted_shape

    store = source.store
    name = PART_NAMES[part]
    missing = [key for _, key in plan if key not in store.keys()]
    if missing:
        raise WeightsError(
            f"{path}: {len(missing)} {name} tensors are missing ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): an incomplete or non-SD-1.x checkpoint"
        )
    used = [key for _, key in plan]
    if len(set(used)) != len(used):
        raise AssertionError(f"the {name} plan uses a tensor twice")  # a bug in the name modules, never user input
    for assignment, key in plan:
        target = tuple(assignment.variable.shape)
        if converted_shape(store.shape(key), assignment.kind, target) is None:
            raise WeightsError(
                f"{path}: {name} tensor {key} has shape {list(store.shape(key))} where SD 1.x's {name} needs "
                f"{list(target)} (in Keras' layout): not an SD 1.x checkpoint"
            )
    used = set(used)
    unused = [key for key in store.keys() if source.owns(key) and key not in used and not ignored(key)]
    if unused:
        raise WeightsError(
            f"{path}: {len(unused)} {name} tensors have no place in SD 1.x's {name} ({', '.join(sorted(unused)[:3])}"
            f"{', ...' if len(unused) > 3 else ''}): a different architecture"
        )


def ignored(key):
    return key.endswith(IGNORED_SUFFIXES)


def missing_part_message(path, part, checkpoint):
    held = ", ".join(PART_NAMES[held] for held in checkpoint.parts()) or "nothing usable"
    return f"{path}: holds no {PART_NAMES[part]} (it holds: {held})"


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
