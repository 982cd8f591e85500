"""The locks on the doors, end to end: bearer tokens (and SIGHUP reload), TLS and mutual
TLS from certificate files made here, per-client rate limits, socket permissions, and
the refusal to start on secret files other users can read."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import stat
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge.client import Client
from edge.errors import ConfigError
from edge.private_files import check_secret_file as check_private_file
from edge.security import RateLimiter, TokenStore

from .conftest import SERVING, TOKEN_A, TOKEN_B, fake_config, health_status, start_daemon, write_private

def code_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


# -- tokens ----------------------------------------------------------------------------------

def test_token_store_parses_names_comments_and_rejects_short_tokens(tmp_path):
    f = write_private(tmp_path / "tokens", f"# operators\nkiosk {TOKEN_A}\n\n{TOKEN_B}  # unnamed\n")
    store = TokenStore(str(f))
    assert store.authenticate(TOKEN_A) == "kiosk"
    assert store.authenticate(TOKEN_B) == "client-4"
    assert store.authenticate(TOKEN_A[:-1]) is None
    assert store.authenticate(TOKEN_A + "x") is None
    assert store.authenticate("") is None
    write_private(f, "kiosk short\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        store.reload()
    assert store.authenticate(TOKEN_A) == "kiosk"  # a failed reload keeps the old tokens
    write_private(f, "# nothing\n")
    with pytest.raises(ConfigError, match="no token"):
        store.reload()


def test_secret_files_readable_by_everyone_are_refused(tmp_path):
    f = write_private(tmp_path / "tokens", f"{TOKEN_A}\n", mode=0o644)
    with pytest.raises(ConfigError, match=r"security.tokens_file: .*readable by every user \(mode 0644\).*chmod 600"):
        check_private_file(str(f), "security.tokens_file")
    with pytest.raises(ConfigError, match="cannot read"):
        check_private_file(str(tmp_path / "missing"), "security.tokens_file")


def test_daemon_refuses_to_start_with_a_world_readable_tokens_file(tmp_path):
    f = write_private(tmp_path / "tokens", f"{TOKEN_A}\n", mode=0o604)
    with pytest.raises(RuntimeError, match="security.tokens_file.*readable by every user"):
        start_daemon(tmp_path, fake_config(extra=f'[security]\ntokens_file = "{f}"\n'))


def test_bearer_tokens_guard_every_rpc_but_health_and_reload_on_sighup(tmp_path):
    f = write_private(tmp_path / "tokens", f"kiosk {TOKEN_A}\n")
    d = start_daemon(tmp_path, fake_config(reply="ok", extra=f'[security]\ntokens_file = "{f}"\n'))
    try:
        anon, wrong, good = Client(d.target), Client(d.target, token="x" * 24), Client(d.target, token=TOKEN_A)
        assert code_of(lambda: anon.ask("hi", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: wrong.ask("hi", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: list(anon.stream("hi", timeout=5))) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: anon.status(timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        assert good.ask("hi", timeout=5).text == "ok"
        assert list(good.stream("hi", timeout=5))[-1].final.text == "ok"
        assert good.status(timeout=5).auth_required
        assert health_status(d.target) == SERVING  # supervisors need no secret
        assert TOKEN_A not in d.logs()

        # Rotate: the new token works after SIGHUP, the old one no longer does.
        write_private(f, f"kiosk {TOKEN_B}\n")
        d.proc.send_signal(signal.SIGHUP)
        rotated = Client(d.target, token=TOKEN_B)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                rotated.ask("hi", timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        assert rotated.ask("hi", timeout=5).text == "ok"
        assert code_of(lambda: good.ask("hi", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED

        # A reload that would break the doors keeps the tokens in force, and says why.
        f.chmod(0o644)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "tokens file not reloaded" not in d.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "tokens file not reloaded" in d.logs()
        assert rotated.ask("hi", timeout=5).text == "ok"
        assert d.proc.poll() is None
    finally:
        d.stop()


# -- rate limits -----------------------------------------------------------------------------

def test_rate_limiter_refills_at_its_rate():
    now = [100.0]
    rl = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("a") == pytest.approx(0.5)
    assert rl.acquire("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert rl.acquire("a") == 0.0
    now[0] += 100
    assert [rl.acquire("a") for _ in range(4)][-1] > 0  # refills to the burst, not beyond


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint_per_client(tmp_path):
    f = write_private(tmp_path / "tokens", f"kiosk {TOKEN_A}\npanel {TOKEN_B}\n")
    cfg = fake_config(reply="ok", extra=f'[security]\ntokens_file = "{f}"\nrate_limit_per_s = 0.5\nrate_limit_burst = 2\n')
    d = start_daemon(tmp_path, cfg)
    try:
        kiosk, panel = Client(d.target, token=TOKEN_A), Client(d.target, token=TOKEN_B)
        assert [kiosk.ask("hi", timeout=5).text for _ in range(2)] == ["ok", "ok"]
        with pytest.raises(grpc.RpcError) as info:
            kiosk.ask("hi", timeout=5)
        err = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit: 0.5 requests/s (burst 2)" in err.details() and "retry in" in err.details()
        hint = dict(err.trailing_metadata())["retry-after-ms"]
        assert 1000 <= int(hint) <= 2000
        assert panel.ask("hi", timeout=5).text == "ok"  # one client's flood does not stop another
        assert health_status(d.target) == SERVING
    finally:
        d.stop()


# -- unix socket -----------------------------------------------------------------------------

def test_unix_socket_is_owner_only_by_default_and_opens_to_a_configured_group(tmp_path):
    sock = tmp_path / "edge.sock"
    d = start_daemon(tmp_path, fake_config(reply="ok", server_extra=f'unix_socket = "{sock}"'), name="owner")
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        d.stop()
    gid = os.getgid()
    d = start_daemon(tmp_path, fake_config(reply="ok", server_extra=f'unix_socket = "{sock}"\nunix_socket_group = "{gid}"'),
                     name="group")
    try:
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid
        assert Client(f"unix:{sock}").ask("hi", timeout=5).text == "ok"
    finally:
        d.stop()


# -- TLS -------------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, server: bool = False):  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("edge test CA", ca_key, "edge test CA", ca_key, ca=True)
    out: dict[str, Path] = {}

    def save(name: str, cert, key) -> None:  # type: ignore[no-untyped-def]
        out[f"{name}_cert"] = d / f"{name}.crt"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            out[f"{name}_key"] = write_private(d / f"{name}.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())

    save("ca", ca, None)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    save("server", _cert("127.0.0.1", server_key, "edge test CA", ca_key, server=True), server_key)
    save("client", _cert("kiosk-7", client_key, "edge test CA", ca_key), client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    save("other", _cert("panel-3", other_key, "edge test CA", ca_key), other_key)
    return out


def tls_config(pki: dict[str, Path], mutual: bool) -> str:
    extra = f'[security]\ntls_cert_file = "{pki["server_cert"]}"\ntls_key_file = "{pki["server_key"]}"\n'
    if mutual:
        extra += f'tls_client_ca_file = "{pki["ca_cert"]}"\n'
    return fake_config(reply="ok", extra=extra)


def tls_health(target: str, pki: dict[str, Path], client_cert: bool) -> int:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca_cert"].read_bytes(),
        private_key=pki["client_key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client_cert"].read_bytes() if client_cert else None)
    with grpc.secure_channel(target, creds) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def start_tls_daemon(tmp_path: Path, pki: dict[str, Path], mutual: bool):  # type: ignore[no-untyped-def]
    """A daemon on TLS (mutual or not), once its health service says SERVING over TLS."""
    d = start_daemon(tmp_path, tls_config(pki, mutual=mutual), wait_serving=False)
    deadline = time.monotonic() + 30
    while tls_health(d.target, pki, client_cert=mutual) != SERVING and time.monotonic() < deadline:
        time.sleep(0.05)
    return d


def test_tls_listener_serves_tls_clients_only(tmp_path, pki):
    d = start_tls_daemon(tmp_path, pki, mutual=False)
    try:
        c = Client(d.target, ca_file=str(pki["ca_cert"]))
        assert c.ask("hi", timeout=5).text == "ok"
        assert c.status(timeout=5).tls == "tls"
        assert code_of(lambda: Client(d.target).ask("hi", timeout=3)) == grpc.StatusCode.UNAVAILABLE  # plaintext
    finally:
        d.stop()


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, pki):
    d = start_tls_daemon(tmp_path, pki, mutual=True)
    try:
        c = Client(d.target, ca_file=str(pki["ca_cert"]), cert_file=str(pki["client_cert"]),
                   key_file=str(pki["client_key"]))
        assert c.ask("hi", timeout=5).text == "ok"
        assert c.status(timeout=5).tls == "mutual"
        anonymous = Client(d.target, ca_file=str(pki["ca_cert"]))
        assert code_of(lambda: anonymous.ask("hi", timeout=3)) == grpc.StatusCode.UNAVAILABLE
    finally:
        d.stop()


def test_world_readable_tls_key_stops_the_daemon_before_it_listens(tmp_path, pki):
    key = write_private(tmp_path / "server.key", pki["server_key"].read_text(), mode=0o644)
    extra = f'[security]\ntls_cert_file = "{pki["server_cert"]}"\ntls_key_file = "{key}"\n'
    with pytest.raises(RuntimeError, match="security.tls_key_file.*readable by every user"):
        start_daemon(tmp_path, fake_config(extra=extra))


def test_tls_settings_that_do_not_pair_are_config_errors(tmp_path):
    from edge.config import load_settings

    cfg = tmp_path / "c.toml"
    cfg.write_text('[security]\ntls_cert_file = "a.crt"\n')
    with pytest.raises(ConfigError, match="security: .*tls_cert_file and tls_key_file go together"):
        load_settings(cfg, environ={})
    cfg.write_text('[security]\ntls_client_ca_file = "ca.crt"\n')
    with pytest.raises(ConfigError, match="mutual TLS"):
        load_settings(cfg, environ={})


def test_under_mutual_tls_each_certificate_is_its_own_tenant_and_the_socket_its_own_scope(tmp_path, pki):
    """Without tokens, mutual TLS names the client: one certificate's cached answer is
    never served to another, nor to the unix socket (which presents none)."""
    sock = tmp_path / "edge.sock"
    security = (f'[security]\ntls_cert_file = "{pki["server_cert"]}"\ntls_key_file = "{pki["server_key"]}"\n'
                f'tls_client_ca_file = "{pki["ca_cert"]}"\n\n[cache]\nenabled = true\n')
    cfg = fake_config(reply="ok", server_extra=f'unix_socket = "{sock}"', extra=security)
    d = start_daemon(tmp_path, cfg, wait_serving=False)
    try:
        deadline = time.monotonic() + 30
        while tls_health(d.target, pki, client_cert=True) != SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        kiosk = Client(d.target, ca_file=str(pki["ca_cert"]), cert_file=str(pki["client_cert"]),
                       key_file=str(pki["client_key"]))
        panel = Client(d.target, ca_file=str(pki["ca_cert"]), cert_file=str(pki["other_cert"]),
                       key_file=str(pki["other_key"]))
        local = Client(f"unix:{sock}")
        question = "What is the boiling point of water?"
        assert kiosk.ask(question, timeout=10).served_by.backend == "local"
        assert kiosk.ask(question, timeout=10).served_by.backend == "cache"
        assert panel.ask(question, timeout=10).served_by.backend == "local"  # not kiosk-7's answer
        assert local.ask(question, timeout=10).served_by.backend == "local"  # nor the socket's
        assert local.ask(question, timeout=10).served_by.backend == "cache"  # the socket's own scope
    finally:
        d.stop()


def test_metrics_can_speak_tls_and_refuse_plain_http(tmp_path, pki):
    import ssl

    import httpx

    d = start_daemon(tmp_path, fake_config(reply="ok", extra=f"""
[metrics]
listen = "127.0.0.1:0"
tls_cert_file = "{pki["server_cert"]}"
tls_key_file = "{pki["server_key"]}"
"""))
    try:
        url = f"https://{d.addresses['metrics']}/metrics"
        ctx = ssl.create_default_context(cafile=str(pki["ca_cert"]))
        assert "edge_serving 1.0" in httpx.get(url, verify=ctx, timeout=5).text
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https", "http"), timeout=5)
    finally:
        d.stop()
