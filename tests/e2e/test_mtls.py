"""mTLS: a client certificate from the configured CA names its principal by SPIFFE ID
(URI SAN). Certificates from another CA, or none at all, never complete the handshake."""

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, envelope, error_info

SPIFFE_ID = "spiffe://example.org/agents/support"
UNMAPPED_ID = "spiffe://example.org/agents/stranger"
TENANT = "tenant_mtls"
TIMEOUT = 10  # seconds per call: a failing handshake must not hang the test


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue(
    ca: Issued, common_name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def workload(ca: Issued, spiffe_id: str) -> Issued:
    return issue(
        ca,
        "signoff test workload",
        [x509.UniformResourceIdentifier(spiffe_id)],
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    unmapped: Issued
    rogue: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = new_ca("signoff test CA")
    server = issue(
        ca,
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    # Same SPIFFE ID as the trusted client, but signed by a CA the server does not trust.
    rogue_ca = new_ca("signoff test CA")
    return Pki(
        ca,
        server,
        workload(ca, SPIFFE_ID),
        workload(ca, UNMAPPED_ID),
        workload(rogue_ca, SPIFFE_ID),
    )


@pytest.fixture(scope="module")
def mtls_server(
    pki: Pki, make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("mtls")
    (directory / "server.pem").write_bytes(pki.server.cert_pem)
    (directory / "server.key").write_bytes(pki.server.key_pem)
    (directory / "client-ca.pem").write_bytes(pki.ca.cert_pem)
    config = directory / "auth.yaml"
    # Relative paths resolve against the config file's directory.
    config.write_text(
        "mtls:\n"
        "  server_cert: server.pem\n"
        "  server_key: server.key\n"
        "  client_ca: client-ca.pem\n"
        "  principals:\n"
        f'    "{SPIFFE_ID}": {{id: agt_support, kind: agent, tenant: {TENANT}}}\n'
    )
    with ServerProcess(make_database("sqlite"), directory, auth_config=config) as server:
        yield server


@pytest.fixture
def channels(
    mtls_server: ServerProcess, pki: Pki
) -> Iterator[Callable[[Issued | None], grpc.Channel]]:
    opened: list[grpc.Channel] = []

    def open_channel(client: Issued | None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.cert_pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )
        channel = grpc.secure_channel(
            mtls_server.target,
            credentials,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        opened.append(channel)
        return channel

    yield open_channel
    for channel in opened:
        channel.close()


def test_a_trusted_workload_acts_as_its_principal(
    channels: Callable[[Issued | None], grpc.Channel], pki: Pki
) -> None:
    execution = execution_grpc.ExecutionServiceStub(channels(pki.client))
    created = execution.InvokeAgent(envelope(tenant_id=TENANT), timeout=TIMEOUT)
    assert created.instance.state == pb.INSTANCE_STATE_RUNNING
    assert created.instance.tenant_id == TENANT
    instance_id = created.instance.instance_id

    read = execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id), timeout=TIMEOUT
    )
    assert read.instance.instance_id == instance_id
    assert read.instance.tenant_id == TENANT

    # The certificate names an agent, agt_support: an approver's call says so when refused.
    inbox = approval_grpc.ApprovalServiceStub(channels(pki.client))
    with pytest.raises(grpc.RpcError) as not_a_human:
        inbox.ListPendingApprovals(approval_pb.ListPendingApprovalsRequest(), timeout=TIMEOUT)
    assert not_a_human.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(not_a_human.value).metadata["principal"] == "agt_support"

    # ... of tenant_mtls, and of no other tenant.
    with pytest.raises(grpc.RpcError) as elsewhere:
        execution.InvokeAgent(envelope(tenant_id="tenant_acme_prod"), timeout=TIMEOUT)
    assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(elsewhere.value).reason == "TENANT_NOT_ALLOWED"


def test_the_same_spiffe_id_from_another_ca_is_refused(
    channels: Callable[[Issued | None], grpc.Channel], pki: Pki
) -> None:
    policy = policy_grpc.PolicyServiceStub(channels(pki.rogue))
    with pytest.raises(grpc.RpcError) as refused:
        policy.GetPolicy(policy_pb.GetPolicyRequest(), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake failed


def test_no_client_certificate_is_refused(
    channels: Callable[[Issued | None], grpc.Channel],
) -> None:
    policy = policy_grpc.PolicyServiceStub(channels(None))
    with pytest.raises(grpc.RpcError) as refused:
        policy.GetPolicy(policy_pb.GetPolicyRequest(), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_trusted_certificate_with_an_unmapped_spiffe_id_is_unknown(
    channels: Callable[[Issued | None], grpc.Channel], pki: Pki
) -> None:
    policy = policy_grpc.PolicyServiceStub(channels(pki.unmapped))
    with pytest.raises(grpc.RpcError) as refused:
        policy.GetPolicy(policy_pb.GetPolicyRequest(), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(refused.value)
    assert info.reason == "UNKNOWN_WORKLOAD"
    assert UNMAPPED_ID in refused.value.details()


def test_the_operator_cli_speaks_mtls(mtls_server: ServerProcess, pki: Pki, tmp_path: Path) -> None:
    files = {"ca.pem": pki.ca.cert_pem, "me.pem": pki.client.cert_pem, "me.key": pki.client.key_pem}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = subprocess.run(
        [
            Path(sys.executable).parent / "signoff", "instances", "--target", mtls_server.target,
            "--tls-ca", tmp_path / "ca.pem", "--tls-cert", tmp_path / "me.pem",
            "--tls-key", tmp_path / "me.key", "--token", "",
        ],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SIGNOFF_TOKEN": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
