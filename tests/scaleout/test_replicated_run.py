"""Three replicas of the local server, each a host of its own (127.0.0.1-3, same ports), four concurrent clients making
24 images across them; one replica is SIGKILLed mid-run and restarted. Every image arrives, equals the single-server
image for its seed, and the restarted replica answers requests again. Stand-in models (tests/standins.py): three
replicas of the real architectures at 128² hold about 19 GB, more than one process may take on this shared machine;
`tests/bench/bench_replicas.py --models ... --scenario` runs this on a real export (README, "Scaling out", says what
fitted here)."""

import contextlib
import os
import signal
import threading

import numpy as np
import pytest
from replica_run import (
    LOOPBACK_HOSTS,
    PROMPT,
    Workload,
    answered_by_host,
    clients_for,
    grpc_urls,
    ports_free_on,
    rest_urls,
    start_replica,
    start_replicas,
)

from sd_client import Client, cli

IMAGES = 24
SEEDS = list(range(1000, 1000 + IMAGES))
STEPS = 3
KILL_AFTER = 8  # images done when the replica is killed
PAUSE_AFTER = 16  # images done when the workers wait for the restarted replica
VICTIM = 1  # index into LOOPBACK_HOSTS


class Replicas:
    def __init__(self, stack, config, hosts, ports):
        self.stack, self.config, self.hosts, self.ports = stack, config, hosts, ports
        self.servers = start_replicas(stack, config, hosts, ports)

    def kill(self, index):
        process = self.servers[index].process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        assert process.returncode == -signal.SIGKILL

    def restart(self, index):
        """Back on the same address and ports, as a restarted pod behind the same name."""
        self.servers[index] = self.stack.enter_context(start_replica(self.config, self.hosts[index], self.ports))


@pytest.fixture(scope="module")
def replicas(standin_repository):
    with contextlib.ExitStack() as stack:
        yield Replicas(stack, standin_repository / "models.config", LOOPBACK_HOSTS, ports_free_on(LOOPBACK_HOSTS))


@pytest.fixture(scope="module")
def single_server_images(replicas, clip_vocab_path):
    """The reference: every seed's image from one server alone (a client given only that server's URL)."""
    with Client(replicas.servers[0].rest_url, vocab_path=clip_vocab_path, text_to_image=False) as client:
        return {seed: client.generate(PROMPT, num_steps=STEPS, seed=seed)[0].array for seed in SEEDS}


def test_four_clients_survive_a_killed_replica_and_use_it_again(replicas, clip_vocab_path, single_server_images):
    hosts, ports = replicas.hosts, replicas.ports
    # Two clients over gRPC, two over REST, each with all three replicas.
    clients = clients_for([grpc_urls(hosts, ports)] * 2 + [rest_urls(hosts, ports)] * 2, clip_vocab_path)
    killed, restarted = threading.Event(), threading.Event()
    answered_before_restart = {}

    def on_done(count):
        if count >= KILL_AFTER and not killed.is_set():
            killed.set()
            replicas.kill(VICTIM)  # while the other workers' requests run

    workload = Workload(clients, SEEDS, STEPS, pause_after=PAUSE_AFTER, gate=restarted, on_done=on_done)
    runner = threading.Thread(target=workload.run)
    runner.start()
    try:
        assert killed.wait(120), "the run never reached the kill"
        answered_before_restart.update(answered_by_host(clients))
        replicas.restart(VICTIM)
        answered_before_restart.update(answered_by_host(clients))
    finally:
        restarted.set()
        runner.join(300)
        for client in clients:
            client.close()
    assert not runner.is_alive()

    assert workload.errors == [], workload.errors
    assert sorted(workload.images) == SEEDS, "every image arrives"
    for seed in SEEDS:
        np.testing.assert_array_equal(workload.images[seed], single_server_images[seed], err_msg=f"seed {seed}")
    answered = answered_by_host(clients)
    failovers = sum(sum(client.transport.failovers.values()) for client in clients)
    assert failovers > 0, "no request met the dead replica: the kill came too late to prove failover"
    for host in hosts:
        assert answered[host] > 0, f"{host} took no requests: {answered}"
    after_restart = answered[hosts[VICTIM]] - answered_before_restart.get(hosts[VICTIM], 0)
    assert after_restart > 0, f"the restarted replica took no requests: {answered_before_restart} -> {answered}"


def test_split_routing_and_the_cli_over_replicas(replicas, clip_vocab_path, single_server_images, capsys):
    """Per-model routing as the split layout uses it (text_encoder and decoder on one host over REST, the U-Net on two
    others over gRPC) gives the single-server image; `sd-client health` takes the replicas as one --url list."""
    hosts, ports = replicas.hosts, replicas.ports
    rest, grpc = rest_urls(hosts, ports), grpc_urls(hosts, ports)
    routes = {"text_encoder": rest[0], "decoder": rest[0], "diffusion_model": grpc[1:]}
    with Client(routes, vocab_path=clip_vocab_path) as client:
        for seed in SEEDS[:2]:
            np.testing.assert_array_equal(
                client.generate(PROMPT, num_steps=STEPS, seed=seed)[0].array, single_server_images[seed]
            )
        assert sorted(client.transport.routes["diffusion_model"].answered) == [url[7:] for url in grpc[1:]]
    assert cli.main(["health", "--url", ",".join(grpc[:2]), "--url", grpc[2]]) == 0
    assert "diffusion_model: version 1 AVAILABLE, version 2 AVAILABLE" in capsys.readouterr().out


def test_dns_and_address_list_targets_use_grpcs_round_robin(replicas, clip_vocab_path, single_server_images):
    """dns:/// goes to gRPC's resolver and round_robin policy (what a headless Service's records feed); an ipv4:
    address list of the three replicas does the same, and gRPC itself routes around a killed one."""
    port = replicas.ports[0]
    with Client(f"dns:///localhost:{port}", vocab_path=clip_vocab_path, text_to_image=False) as client:
        np.testing.assert_array_equal(
            client.generate(PROMPT, num_steps=STEPS, seed=SEEDS[0])[0].array, single_server_images[SEEDS[0]]
        )
    addresses = "ipv4:" + ",".join(f"{host}:{port}" for host in replicas.hosts)
    with Client(addresses, vocab_path=clip_vocab_path, text_to_image=False, timeout=60) as client:
        for seed in SEEDS[1:4]:
            np.testing.assert_array_equal(
                client.generate(PROMPT, num_steps=STEPS, seed=seed)[0].array, single_server_images[seed]
            )
        replicas.kill(2)
        for seed in SEEDS[4:7]:
            np.testing.assert_array_equal(
                client.generate(PROMPT, num_steps=STEPS, seed=seed)[0].array, single_server_images[seed]
            )
