"""Several sd-model-server replicas on this machine, each on a loopback address of its own (127.0.0.1, .2, .3: on Linux
the whole 127/8 block is the loopback interface, so each replica is a host of its own with the same ports),
and concurrent clients spreading generations over them. Shared by tests/scaleout/test_replicated_run.py and
tests/bench/bench_replicas.py.
"""

import collections
import concurrent.futures
import contextlib
import queue
import socket
import threading
import time
import urllib.parse

from server_process import running_server

from sd_client import Client

# 127.0.0.1 among them, so that dns:///localhost:PORT resolves to one of the replicas.
LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PROMPT = "a lighthouse at dusk"


def ports_free_on(hosts):
    """(grpc_port, rest_port), each free on every host: replicas differ by address only, as pods do."""
    for _ in range(50):
        ports = []
        with contextlib.ExitStack() as stack:
            for _ in range(2):
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((hosts[0], 0))
                ports.append(sock.getsockname()[1])
        if ports[0] != ports[1] and all(_free(host, port) for host in hosts[1:] for port in ports):
            return tuple(ports)
    raise RuntimeError(f"no port pair free on all of {hosts}")


def _free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_replica(config_path, host, ports, **flags):
    """A context manager: sd-model-server on host:ports, ready (every model AVAILABLE) when entered."""
    return running_server(config_path, host=host, ports=ports, attempts=1, **flags)


def start_replicas(stack, config_path, hosts, ports, **flags):
    """One replica per host, started side by side (each loads TensorFlow and the models); stopped by `stack`."""
    managers = [start_replica(config_path, host, ports, **flags) for host in hosts]
    with concurrent.futures.ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    replicas = []
    for manager, future in zip(managers, futures):
        if future.exception() is None:
            stack.push(manager.__exit__)
            replicas.append(future.result())
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return replicas


def grpc_urls(hosts, ports):
    return [f"grpc://{host}:{ports[0]}" for host in hosts]


def rest_urls(hosts, ports):
    return [f"http://{host}:{ports[1]}" for host in hosts]


class Workload:
    """Images for `seeds`, made by one thread per client, each taking the next seed from a shared queue.

    on_done(count) runs (in the worker) after each image; a worker waits at `gate` (a threading.Event, if given)
    before each image once `pause_after` images are done, which lets a test act between two phases of one run."""

    def __init__(self, clients, seeds, num_steps, pause_after=None, gate=None, on_done=None):
        self.clients = clients
        self.seeds = queue.Queue()
        for seed in seeds:
            self.seeds.put(seed)
        self.num_steps = num_steps
        self.pause_after = pause_after
        self.gate = gate
        self.on_done = on_done
        self.images = {}
        self.errors = []
        self._lock = threading.Lock()

    def run(self):
        threads = [threading.Thread(target=self._work, args=(client,)) for client in self.clients]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def _work(self, client):
        while True:
            if self.gate is not None and self.pause_after is not None and len(self.images) >= self.pause_after:
                self.gate.wait()
            try:
                seed = self.seeds.get_nowait()
            except queue.Empty:
                return
            try:
                (result,) = client.generate(PROMPT, num_steps=self.num_steps, seed=seed)
            except Exception as error:  # reported by the caller: every image must arrive
                with self._lock:
                    self.errors.append((seed, error))
                continue
            with self._lock:
                self.images[seed] = result.array
                done = len(self.images)
            if self.on_done is not None:
                self.on_done(done)


def clients_for(urls_per_client, vocab_path, timeout=120.0):
    return [Client(urls, vocab_path=vocab_path, timeout=timeout, text_to_image=False) for urls in urls_per_client]


def answered_by_host(clients):
    """host -> requests it answered, over every client's ReplicatedTransport."""
    counts = collections.Counter()
    for client in clients:
        for endpoint, count in client.transport.answered.items():
            counts[urllib.parse.urlsplit(endpoint if "://" in endpoint else "//" + endpoint).hostname] += count
    return counts
