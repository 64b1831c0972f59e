"""Scaling out on one machine: throughput of 1, 2 and 3 sd-model-server replicas on the same work, and (--scenario)
the replicated run with a replica SIGKILLed mid-run and restarted, on stand-ins or on a real export.

    .venv/bin/python tests/bench/bench_replicas.py                     # stand-ins exported to a temp folder
    TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0 flock /tmp/sd-heavy.lock .venv/bin/python tests/bench/bench_replicas.py \\
        --models /tmp/real128bf16/models --steps 2 --images 24 --rounds 1 --scenario
                                        # the real architectures, a bfloat16 export: 3 replicas held 12.6 GB

Three replicas listen on 127.0.0.1, .2 and .3 (each loopback address a host of its own, same ports). Four client
threads (sd_client over gRPC, one Client each, every Client given the first N replicas' URLs) make --images images,
one per generate() call, seeds fixed; the replica counts 1, 2, 3 are interleaved round by round so that load from other
processes falls on all alike. Throughput = images per minute; scaling efficiency = throughput(N) / (N x
throughput(1)). Every image is checked against the one-replica image of its seed.

What it measures here: this machine has 2 cores, and all replicas share them. On stand-ins (models that compute next
to nothing) the numbers are the client's and server's own overhead per image and how it overlaps across processes;
on the real architectures the U-Net saturates both cores with one replica, so more replicas cannot add throughput.
GPU hosts, where each replica has its own device, are where replicas scale; that could not be measured here.

--scenario, after the throughput rounds: the 4 clients make --images images over the 3 replicas (two over gRPC, two
over REST); after a third of them one replica is SIGKILLed, after two thirds the clients wait until it is restarted on
the same address; then the rest. Reports failovers, each replica's answered requests (before and after the
restart) and whether every image equals the one-replica image of its seed.

Memory: the replicas start one after another (their loading peaks do not add up; on 2 cores loading side by side is
no faster). A watcher samples the resident memory of this process and its children (the replicas) twice a second and
reports the peak of the total; above --max-memory-gb it SIGKILLs the replicas and the run fails, so that a real
export cannot take a shared machine down.
"""

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "scaleout"), str(ROOT / "tests" / "bench")]

from replica_run import (  # noqa: E402
    LOOPBACK_HOSTS,
    Workload,
    answered_by_host,
    clients_for,
    grpc_urls,
    ports_free_on,
    rest_urls,
    start_replica,
)
from tables import print_table  # noqa: E402

CLIP_VOCAB = ROOT.parent / "shared/clip/bpe_simple_vocab_16e6.txt.gz"
STANDIN_SIZE = 128
CLIENTS = 4
FIRST_SEED = 5000


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as scratch, contextlib.ExitStack() as stack:
        models_dir = args.models or export_standins(Path(scratch))
        config = models_dir / "models.config"
        watch = stack.enter_context(MemoryWatch(args.max_memory_gb))
        try:
            run(stack, config, args, watch)
        finally:  # also when the replicas were stopped for memory: say so, not only that requests failed
            print(f"\nmemory: {watch.report()}", flush=True)
            watch.check()


def run(stack, config, args, watch):
    hosts, ports = LOOPBACK_HOSTS, ports_free_on(LOOPBACK_HOSTS)
    started = time.monotonic()
    servers = [stack.enter_context(start_replica(config, host, ports, start_timeout=args.start_timeout,
                                                 rest_api_timeout_in_ms=3_600_000)) for host in hosts]  # fmt: skip
    print(f"3 replicas loaded in {time.monotonic() - started:.0f} s, memory so far {watch.report()}", flush=True)
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.images))
    reference, rows = throughput(hosts, ports, seeds, args)
    print(f"\nmodels: {args.models or f'stand-ins at {STANDIN_SIZE}x{STANDIN_SIZE}'}, {args.steps} steps, "
          f"{args.images} images by {CLIENTS} concurrent clients over gRPC, median of {args.rounds} rounds\n")  # fmt: skip
    print_table(["replicas", "seconds", "images per minute", "× 1 replica", "scaling efficiency"], rows)
    if args.scenario:
        scenario(stack, servers, config, hosts, ports, seeds, reference, args)


class MemoryWatch:
    """Peak resident memory of this process and its children (the replicas, loading or serving), sampled every
    0.5 s; above limit_gb the children are SIGKILLed."""

    def __init__(self, limit_gb):
        self.limit = limit_gb * 1e9
        self.peak, self.exceeded = 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        own = psutil.Process()
        while not self._stop.wait(0.5):
            children = own.children(recursive=True)
            total = own.memory_info().rss
            for child in children:
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            if total > self.limit and self.exceeded is None:
                self.exceeded = total
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        child.kill()

    def report(self):
        return f"peak {self.peak / 1e9:.1f} GB (replicas + this process, sampled every 0.5 s)"

    def check(self):
        if self.exceeded is not None:
            raise SystemExit(f"stopped: {self.exceeded / 1e9:.1f} GB, above --max-memory-gb {self.limit / 1e9:g}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a model repository with models.config (default: stand-ins)")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps per image (default 5)")
    parser.add_argument("--images", type=int, default=24, help="images per run (default 24)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 1, 2, 3 replicas (default 3)")
    parser.add_argument("--scenario", action="store_true", help="then kill and restart a replica mid-run")
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds to wait for loading and warmup")
    parser.add_argument("--vocab", type=Path, default=CLIP_VOCAB, help="CLIP vocabulary")
    parser.add_argument("--max-memory-gb", type=float, default=19.0,
                        help="SIGKILL the replicas when they and this process hold more (default 19)")  # fmt: skip
    args = parser.parse_args()
    if args.models and not (args.models / "models.config").is_file():
        parser.error(f"{args.models}/models.config not found: export first (make export)")
    return args


def export_standins(folder):
    import standins
    from sd_export.export import export_repository

    models_dir = folder / "models"
    components = standins.components(STANDIN_SIZE, STANDIN_SIZE)
    export_repository(components, models_dir, STANDIN_SIZE, STANDIN_SIZE, version=1)  # the split models only
    return models_dir


def throughput(hosts, ports, seeds, args):
    """(the one-replica image of every seed, table rows)."""
    timings = {count: [] for count in (1, 2, 3)}
    reference = None
    for round_index in range(args.rounds):
        for count in (1, 2, 3):
            clients = clients_for([grpc_urls(hosts[:count], ports)] * CLIENTS, args.vocab, timeout=3600)
            workload = Workload(clients, seeds, args.steps)
            seconds = workload.run()
            for client in clients:
                client.close()
            if workload.errors:
                raise SystemExit(f"{count} replicas: {workload.errors[:3]}")
            reference = reference or workload.images
            unequal = [s for s in seeds if not np.array_equal(workload.images[s], reference[s])]
            if unequal:
                raise SystemExit(f"{count} replicas: images differ from one replica's for seeds {unequal}")
            timings[count].append(seconds)
            print(f"round {round_index + 1}, {count} replica(s): {seconds:.1f} s", flush=True)
    base = len(seeds) * 60 / statistics.median(timings[1])
    rows = []
    for count, values in timings.items():
        seconds = statistics.median(values)
        rate = len(seeds) * 60 / seconds
        rows.append([count, f"{seconds:.1f}", f"{rate:.1f}", f"{rate / base:.2f}", f"{rate / base / count:.0%}"])
    return reference, rows


def scenario(stack, servers, config, hosts, ports, seeds, reference, args):
    victim = 1
    clients = clients_for([grpc_urls(hosts, ports)] * 2 + [rest_urls(hosts, ports)] * 2, args.vocab, timeout=3600)
    victim_process = servers[victim].process
    killed, restarted = threading.Event(), threading.Event()
    kill_after, pause_after = len(seeds) // 3, 2 * len(seeds) // 3

    def on_done(count):
        if count >= kill_after and not killed.is_set():
            killed.set()
            os.kill(victim_process.pid, signal.SIGKILL)

    workload = Workload(clients, seeds, args.steps, pause_after=pause_after, gate=restarted, on_done=on_done)
    runner = threading.Thread(target=workload.run)
    started = time.monotonic()
    runner.start()
    killed.wait()
    victim_process.wait()
    print(f"\nscenario: replica {hosts[victim]} SIGKILLed after {kill_after} images "
          f"(exit {victim_process.returncode}) at {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    before = answered_by_host(clients)
    restart_started = time.monotonic()
    stack.enter_context(start_replica(config, hosts[victim], ports, start_timeout=args.start_timeout,
                                      rest_api_timeout_in_ms=3_600_000))  # fmt: skip
    at_restart = answered_by_host(clients)
    print(f"scenario: restarted in {time.monotonic() - restart_started:.0f} s; "
          f"{len(workload.images)} images done meanwhile", flush=True)  # fmt: skip
    restarted.set()
    runner.join()
    after = answered_by_host(clients)
    failovers = sum(sum(client.transport.failovers.values()) for client in clients)
    equal = all(np.array_equal(workload.images.get(s), reference[s]) for s in seeds)
    print(f"scenario: {len(workload.images)}/{len(seeds)} images in {time.monotonic() - started:.0f} s, errors "
          f"{workload.errors}, every image equal to the one-replica image: {equal}, failovers {failovers}")  # fmt: skip
    print_table(["replica", "requests answered before the kill", "at the restart", "after the restart"],
                [[h, before.get(h, 0), at_restart.get(h, 0), after.get(h, 0) - at_restart.get(h, 0)] for h in hosts])  # fmt: skip
    if workload.errors or not equal or after.get(hosts[victim], 0) <= at_restart.get(hosts[victim], 0):
        raise SystemExit("scenario FAILED")


if __name__ == "__main__":
    main()
