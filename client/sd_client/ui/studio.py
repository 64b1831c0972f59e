"""What the page and the API share: the client, the served choices, one generation at a time."""

import threading

from .models import canonical_sampler, find_choice, served_choices


class Studio:
    def __init__(self, client, labels=()):
        """client: an sd_client.Client (any transport); labels: label names to offer besides those it can list."""
        self.client = client
        self.labels = tuple(labels)
        # One generation at a time, page and API alike (as A1111 queues its jobs): the server's memory and cores are
        # sized for one request, and the client object is not shared across threads.
        self._lock = threading.Lock()

    def choices(self):
        with self._lock:
            return served_choices(self.client, self.labels)

    def samplers(self, title):
        choice = find_choice(self.choices(), title)
        with self._lock:
            return self.client.samplers(**choice.selector)

    def sampler(self, name, choice):
        """The sampler's name as the choice offers it (input is case-insensitive), or ValidationError."""
        with self._lock:
            return canonical_sampler(self.client, name, choice.selector)

    def generate(self, prompt, negative_prompt, num_images, steps, guidance, seed, choice, sampler):
        """client.generate on one choice; sampler is matched case-insensitively against what it offers."""
        with self._lock:
            sampler = canonical_sampler(self.client, sampler, choice.selector)
            return self.client.generate(
                prompt,
                negative_prompt=negative_prompt,
                num_images=num_images,
                num_steps=steps,
                guidance_scale=guidance,
                seed=seed,
                **choice.selector,
                sampler=sampler,
            )

    def generate_one(self, prompt, negative_prompt, steps, guidance, seed, choice, sampler):
        (result,) = self.generate(prompt, negative_prompt, 1, steps, guidance, seed, choice, sampler)
        return result
