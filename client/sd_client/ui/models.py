"""What the page and the API offer to choose from: the served versions and labels, and their samplers.

TF Serving reports the versions of a model but has no call that lists its labels: the labels come from `sd-client ui
--label NAME` (each checked against the server) and, when the models run in this process, from the repository's
config. A label is shown with the version it names, e.g. "tuned (version 2)".
"""

import dataclasses

from .. import contract
from ..errors import InvalidArgument, NotFound, ServingError, ValidationError


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One served version, or one label and the version it names."""

    version: int
    label: str | None = None

    @property
    def title(self):
        return f"{self.label} (version {self.version})" if self.label else f"version {self.version}"

    @property
    def selector(self):
        """The keyword arguments that pick this choice in Client.generate()."""
        return {"label": self.label} if self.label else {"version": self.version}

    def matches(self, name):
        """A1111 clients name a checkpoint by its title; a bare label or version number is accepted as well."""
        name = str(name).strip()
        return name.lower() == self.title.lower() or name == self.label or name == str(self.version) and not self.label


def served_choices(client, labels=()):
    """Every available version of the models generate() uses (latest first), then each label.

    labels: label names to offer besides those of an in-process repository; one the server does not know raises."""
    health = client.health(models=(contract.TEXT_TO_IMAGE, contract.DIFFUSION_MODEL))
    served = {m: statuses for m, statuses in health.items() if not isinstance(statuses, ServingError)}
    versions = sorted({s.version for statuses in served.values() for s in statuses if s.available}, reverse=True)
    if not versions:
        raise NotFound("the server has no available version of text_to_image or diffusion_model")
    model = contract.TEXT_TO_IMAGE if served.get(contract.TEXT_TO_IMAGE) else contract.DIFFUSION_MODEL
    choices = [ModelChoice(v) for v in versions]
    for label in dict.fromkeys([*repository_labels(client), *labels]):
        choices.append(ModelChoice(_version_of_label(client, model, label), label))
    return choices


def repository_labels(client):
    """The labels of the repository an in-process client runs (TF Serving's API cannot list a server's)."""
    models_dir = getattr(client.transport, "models_dir", None)
    if models_dir is None:
        return []
    from ..transports.local import read_repository

    served = read_repository(models_dir)
    return sorted({label for model in served.values() for label in model.labels})


def _version_of_label(client, model, label):
    try:
        statuses = client.transport.model_status(model, label=label)
    except (InvalidArgument, NotFound) as e:
        raise ValidationError(f"label {label!r} is not served by {model}: {e.message}") from e
    return statuses[0].version


def find_choice(choices, name):
    for choice in choices:
        if choice.matches(name):
            return choice
    served = ", ".join(c.title for c in choices)
    raise ValidationError(f"model {name!r} is not served; the served ones are: {served}")


def canonical_sampler(client, name, selector):
    """The sampler's name as the served version spells it (input is case-insensitive), or ValidationError."""
    offered = client.samplers(**selector)
    for sampler in offered:
        if sampler.lower() == str(name).strip().lower():
            return sampler
    raise ValidationError(f"sampler {name!r} is not offered by this model; it offers: {', '.join(offered)}")

