"""gRPC's own balancing for dns:/// and ipv4: targets: the client's round_robin policy spreads requests over every
address of the target (what a headless Service's DNS records give), and a lost address is routed around.

Three tiny gRPC servers on 127.0.0.1, .2 and .3 (the same port: one name, several pods) answer GetModelStatus with
their own number as the version, so each answer says which one took the request. With gRPC's default policy
(pick_first) every request would go to one of them: the spread is what the client's service config buys. A small DNS
server (dnslib) plays the cluster's DNS: one name, an A record per replica, as for a headless Service; gRPC's DNS
resolver is pointed at it by the target's authority (dns://DNS_HOST:PORT/NAME:PORT)."""

import collections
import concurrent.futures
import contextlib

import grpc
import pytest
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from replica_run import LOOPBACK_HOSTS, ports_free_on

from sd_client import errors
from sd_client.proto import tf_serving_apis_pb2 as apis
from sd_client.transports import open_transport
from sd_client.transports.grpc_api import GET_MODEL_STATUS

REQUESTS = 60
SERVICE_NAME = "sd-serving-grpc.default.svc.cluster.local"


def status_server(host, port, number):
    """A gRPC server whose GetModelStatus answers version `number`, AVAILABLE."""

    def get_status(request, context):
        return apis.GetModelStatusResponse(
            model_version_status=[apis.ModelVersionStatus(version=number, state=apis.ModelVersionStatus.AVAILABLE)]
        )

    service, method = GET_MODEL_STATUS.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            method: grpc.unary_unary_rpc_method_handler(
                get_status,
                request_deserializer=apis.GetModelStatusRequest.FromString,
                response_serializer=apis.GetModelStatusResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2), handlers=[handler])
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server


@pytest.fixture
def servers():
    port, _ = ports_free_on(LOOPBACK_HOSTS)
    started = {}
    with contextlib.ExitStack() as stack:
        for number, host in enumerate(LOOPBACK_HOSTS, start=1):
            started[number] = status_server(host, port, number)
            stack.callback(started[number].stop, None)
        yield port, started


class HeadlessService(BaseResolver):
    """SERVICE_NAME -> one A record per replica address; every other name: no answer."""

    def resolve(self, request, handler):
        reply = request.reply()
        if request.q.qtype == QTYPE.A and str(request.q.qname).rstrip(".") == SERVICE_NAME:
            for host in LOOPBACK_HOSTS:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(host), ttl=30))
        return reply


@pytest.fixture
def cluster_dns():
    server = DNSServer(HeadlessService(), address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    yield f"127.0.0.1:{server.server.server_address[1]}"
    server.stop()


def answered_by(transport, count):
    return collections.Counter(transport.model_status("diffusion_model")[0].version for _ in range(count))


def test_an_address_list_spreads_requests_over_every_replica(servers):
    port, _ = servers
    transport = open_transport("ipv4:" + ",".join(f"{host}:{port}" for host in LOOPBACK_HOSTS), timeout=10)
    try:
        answered_by(transport, 3)  # round_robin connects to each address in the background; let them come up
        counts = answered_by(transport, REQUESTS)
    finally:
        transport.close()
    assert sorted(counts) == [1, 2, 3], f"not every replica took requests: {counts}"
    assert min(counts.values()) >= REQUESTS // 6, f"requests not spread: {counts}"


def test_a_dns_name_with_several_addresses_spreads_requests_over_every_replica(servers, cluster_dns):
    port, _ = servers
    with contextlib.closing(open_transport(f"dns://{cluster_dns}/{SERVICE_NAME}:{port}", timeout=10)) as transport:
        answered_by(transport, 3)
        counts = answered_by(transport, REQUESTS)
    assert sorted(counts) == [1, 2, 3], f"not every replica took requests: {counts}"
    assert min(counts.values()) >= REQUESTS // 6, f"requests not spread: {counts}"


def test_a_lost_replica_is_routed_around_and_a_dns_name_resolves(servers):
    port, started = servers
    transport = open_transport("ipv4:" + ",".join(f"{host}:{port}" for host in LOOPBACK_HOSTS), timeout=10)
    try:
        answered_by(transport, 6)
        started[2].stop(None).wait()
        counts = answered_by(transport, REQUESTS)  # gRPC's retry on UNAVAILABLE picks another address
    finally:
        transport.close()
    assert 2 not in counts and sorted(counts) == [1, 3], counts
    # dns:/// goes through gRPC's DNS resolver: localhost is 127.0.0.1 here, replica 1.
    with contextlib.closing(open_transport(f"dns:///localhost:{port}", timeout=10)) as dns:
        assert answered_by(dns, 3) == {1: 3}


def test_when_no_address_answers_the_error_is_unavailable(servers):
    port, started = servers
    for server in started.values():
        server.stop(None).wait()
    transport = open_transport(f"ipv4:127.0.0.1:{port},127.0.0.2:{port}", timeout=5, retries=1)
    try:
        with pytest.raises(errors.Unavailable):
            transport.model_status("diffusion_model")
    finally:
        transport.close()
