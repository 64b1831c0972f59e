"""Error against step count on a problem with a known answer: data from a Gaussian mixture (analytic.MIXTURE), the
exact noise prediction (analytic.mixture_unet) run through the exported sampling loop, and the probability-flow ODE's
end point from the same start noise (analytic.mixture_ode_solution).

    python tests/samplers/convergence.py [--plot export/docs/sampler-convergence.png]

prints the relative error of each sampler at each step count and the step count at which DPM++ 2M Karras is as close
as DDIM at 50 steps.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analytic  # noqa: E402
from sd_export import contract, samplers  # noqa: E402
from sd_export.samplers.schedule import SIGMAS  # noqa: E402

LATENT = 16
SEEDS = [1, 2, 3, 4]
ODE_SAMPLERS = ("DDIM", "Euler", "DPM++ 2M", "DPM++ 2M Karras")  # Euler a is stochastic: no ODE end point
STEP_COUNTS = (5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100)


def start_scale(name):
    """Where each sampler starts in the sigma scale: Euler at sigma_max * noise; DDIM and DPM++ keep the latent in the
    variance-preserving scale, noise there is sqrt(1 + sigma_max^2) * noise in the sigma scale."""
    sigma_max = float(SIGMAS[-1])
    return sigma_max if name == "Euler" else float(np.sqrt(1.0 + sigma_max**2))


class Problem:
    def __init__(self):
        self.noise = samplers.initial_noise(tf.constant(SEEDS), LATENT, LATENT).numpy()
        unet = analytic.mixture_unet(LATENT)
        context = tf.zeros([len(SEEDS), contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM])

        @tf.function
        def run(num_steps, index):
            return samplers.sample(
                unet, self.noise, context, context, num_steps, tf.constant(1.0), index, tf.constant(SEEDS)
            )

        self._run = run
        self.references = {scale: analytic.mixture_ode_solution(self.noise, scale) for scale in
                           {start_scale(name) for name in ODE_SAMPLERS}}  # fmt: skip

    def error(self, name, num_steps):
        """RMS error / RMS of the exact end point."""
        latent = self._run(tf.constant(num_steps), tf.constant(contract.SAMPLERS.index(name))).numpy()
        reference = self.references[start_scale(name)]
        return float(np.sqrt(np.mean((latent - reference) ** 2)) / np.sqrt(np.mean(reference**2)))


def order(problem, name, low, high):
    """The observed order of convergence between two step counts: log(error ratio) / log(step ratio)."""
    return float(np.log(problem.error(name, low) / problem.error(name, high)) / np.log(high / low))


def matching_steps(errors, target):
    """The fewest steps in the table whose error is at most target."""
    return next((n for n, e in sorted(errors.items()) if e <= target), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, help="write the error curves to this PNG")
    args = parser.parse_args()
    problem = Problem()
    table = {name: {n: problem.error(name, n) for n in STEP_COUNTS} for name in ODE_SAMPLERS}
    print("steps  " + "  ".join(f"{name:>16}" for name in ODE_SAMPLERS))
    for n in STEP_COUNTS:
        print(f"{n:5d}  " + "  ".join(f"{table[name][n]:16.3e}" for name in ODE_SAMPLERS))
    for name in ODE_SAMPLERS:
        print(f"order of {name} between 10 and 20 steps: {order(problem, name, 10, 20):.2f}")
    ddim_50 = table["DDIM"][50]
    fine = {n: problem.error("DPM++ 2M Karras", n) for n in range(5, 51)}
    print(f"DDIM at 50 steps: {ddim_50:.3e}; DPM++ 2M Karras is as close from {matching_steps(fine, ddim_50)} steps")
    fine = {n: problem.error("DPM++ 2M", n) for n in range(5, 51)}
    print(f"DPM++ 2M is as close from {matching_steps(fine, ddim_50)} steps")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        # DDIM is Euler's method in (x / alpha, sigma) (Karras et al., 2022): the two curves lie on each other.
        styles = {"Euler": dict(linestyle="--", marker="x")}
        for name in ODE_SAMPLERS:
            style = styles.get(name, dict(marker="o"))
            axes.loglog(STEP_COUNTS, [table[name][n] for n in STEP_COUNTS], label=name, **style)
        axes.axhline(ddim_50, color="grey", linestyle=":", label="DDIM at 50 steps")
        axes.set_xlabel("steps")
        axes.set_ylabel("relative RMS error of the end point")
        axes.set_title("Gaussian-mixture data, exact noise prediction")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        figure.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
