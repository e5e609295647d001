"""Certificates made at test time (nothing secret is kept in the repository), the ssl.SSLContexts
the TLS tests and benchmark build from them, and functions run in spawned child processes (they
must be importable by name, hence this module).

make_pki(directory) writes PEM files for:
- a CA, and another CA that nobody trusts;
- the server: DNS "localhost", IP 127.0.0.1 and ::1; an expired one; one signed by the other CA;
- clients named by a DNS subjectAltName and the subject CN ("client-a.example", ...), one
  with a CN and no subjectAltName, one whose SANs differ from its CN, an expired one, and one
  signed by the other CA.

check_certificates() shakes hands with each through Python's own ssl module, which needs no fastmsg
(python tests/tls_helpers.py prints what each does).
"""

import datetime
import ipaddress
import os
import ssl
import sys
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENTS = ("client-a.example", "client-b.example")
CN_ONLY = "cn-only.example"                              # a CN, no subjectAltName at all
MULTI_CN, MULTI_SANS = "multi-cn.example", ("multi-first.example", "multi-second.example")
EXPIRED_CLIENT = "expired-client.example"
ROGUE_CLIENT = "rogue-client.example"                     # signed by the CA nobody trusts
SERVER_DNS = "localhost"
SERVER_IPS = ("127.0.0.1", "::1")
SERVER_IDS = (SERVER_DNS,) + SERVER_IPS


@dataclass
class Cert:
    cert: str  # PEM file of the certificate
    key: str   # PEM file of its private key (unencrypted, in the test's temporary directory)


@dataclass
class Pki:
    directory: str
    ca: str                 # PEM of the trusted CA's certificate
    other_ca: str           # PEM of a CA that nothing here trusts
    server: Cert
    expired_server: Cert
    rogue_server: Cert      # the server's names, signed by other_ca
    clients: dict = field(default_factory=dict)  # name -> Cert


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _key():
    return ec.generate_private_key(ec.SECP256R1())  # P-256: quick to make, accepted at every security level


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class _Authority:
    def __init__(self, cn):
        self.key = _key()
        self.name = _name(cn)
        now = _now()
        self.cert = (x509.CertificateBuilder()
                     .subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, cn, dns=(), ips=(), server=False, expired=False):
        """A leaf certificate and its key. expired: its validity ended yesterday."""
        key = _key()
        now = _now()
        if expired:
            start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn)).issuer_name(self.name)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _write(directory, stem, cert, key=None):
    path = os.path.join(directory, stem + ".pem")
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return path
    key_path = os.path.join(directory, stem + ".key")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return Cert(path, key_path)


def make_pki(directory):
    """Writes every certificate and key into `directory` (which must exist); returns a Pki."""
    ca, other = _Authority("fastmsg test CA"), _Authority("fastmsg untrusted CA")
    server = dict(dns=[SERVER_DNS], ips=SERVER_IPS, server=True)
    pki = Pki(directory=directory,
              ca=_write(directory, "ca", ca.cert),
              other_ca=_write(directory, "other-ca", other.cert),
              server=_write(directory, "server", *ca.issue(SERVER_DNS, **server)),
              expired_server=_write(directory, "expired-server", *ca.issue(SERVER_DNS, expired=True, **server)),
              rogue_server=_write(directory, "rogue-server", *other.issue(SERVER_DNS, **server)))
    for name in CLIENTS:
        pki.clients[name] = _write(directory, name, *ca.issue(name, dns=[name]))
    pki.clients[CN_ONLY] = _write(directory, CN_ONLY, *ca.issue(CN_ONLY))
    pki.clients[MULTI_CN] = _write(directory, MULTI_CN, *ca.issue(MULTI_CN, dns=MULTI_SANS))
    pki.clients[EXPIRED_CLIENT] = _write(directory, EXPIRED_CLIENT, *ca.issue(EXPIRED_CLIENT, dns=[EXPIRED_CLIENT],
                                                                              expired=True))
    pki.clients[ROGUE_CLIENT] = _write(directory, ROGUE_CLIENT, *other.issue(ROGUE_CLIENT, dns=[ROGUE_CLIENT]))
    return pki


def client_context(pki, name=None, cafile=None, check_hostname=True):
    """A Sender's context: trusts `cafile` (the test CA by default); presents client `name`'s
    certificate when a name is given (mutual TLS)."""
    ctx = ssl.create_default_context(cafile=cafile or pki.ca)
    ctx.check_hostname = check_hostname
    if name is not None:
        ctx.load_cert_chain(pki.clients[name].cert, pki.clients[name].key)
    return ctx


def server_context(pki, cert=None, client_certs=None, cafile=None):
    """A Receiver's context with `cert` (the server's by default). client_certs: None (no client
    certificate asked for), "optional" or "required" (verified against `cafile`, the test CA by
    default)."""
    cert = cert or pki.server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    if client_certs is not None:
        ctx.verify_mode = {"optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}[client_certs]
        ctx.load_verify_locations(cafile or pki.ca)
    return ctx


# ---- child-process entry points (multiprocessing "spawn") ----

def receive_and_record_tls(port, path, ready, cert, key):
    """fault_helpers.receive_and_record over TLS: a Receiver on 127.0.0.1:port with the given
    server certificate that checks every message and writes its seq to `path`; runs until killed."""
    import fastmsg
    import fault_helpers

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    rx = fastmsg.Receiver(f"tcp://127.0.0.1:{port}", ssl=ctx)
    ready.set()
    fault_helpers._record(rx, fd, threading.Event())


def check_certificates(directory):
    """Checks each certificate with Python's own ssl module over a socketpair: the good ones
    verify (with and without a client certificate), the bad ones fail for the reason meant."""
    import socket

    pki = make_pki(directory)

    def handshake(server_ctx, client_ctx, hostname=SERVER_IDS[0]):
        a, b = socket.socketpair()
        a.settimeout(5)
        b.settimeout(5)
        outcome = {}

        def serve():
            try:
                with server_ctx.wrap_socket(a, server_side=True) as s:
                    peer = s.getpeercert()
                    outcome["peer"] = peer and dict(x[0] for x in peer["subject"])["commonName"]
                    s.sendall(b"ok")
                    s.recv(1)
            except (ssl.SSLError, OSError) as e:
                outcome["server_error"] = str(e)

        t = threading.Thread(target=serve)
        t.start()
        try:
            with client_ctx.wrap_socket(b, server_hostname=hostname) as c:
                outcome["data"] = c.recv(2)
                c.sendall(b"x")
        except (ssl.SSLError, OSError) as e:
            outcome["client_error"] = str(e)
        t.join(10)
        a.close()
        b.close()
        return outcome

    results = {
        "server cert for localhost": handshake(server_context(pki), client_context(pki), "localhost"),
        "server cert for 127.0.0.1": handshake(server_context(pki), client_context(pki), "127.0.0.1"),
        "server cert for ::1": handshake(server_context(pki), client_context(pki), "::1"),
        "mutual TLS, client-a": handshake(server_context(pki, client_certs="required"),
                                          client_context(pki, CLIENTS[0])),
        "mutual TLS, cn-only": handshake(server_context(pki, client_certs="required"), client_context(pki, CN_ONLY)),
        "mutual TLS, multi": handshake(server_context(pki, client_certs="required"), client_context(pki, MULTI_CN)),
        "wrong host name": handshake(server_context(pki), client_context(pki), "wrong.example"),
        "expired server": handshake(server_context(pki, pki.expired_server), client_context(pki)),
        "rogue server": handshake(server_context(pki, pki.rogue_server), client_context(pki)),
        "expired client": handshake(server_context(pki, client_certs="required"), client_context(pki, EXPIRED_CLIENT)),
        "rogue client": handshake(server_context(pki, client_certs="required"), client_context(pki, ROGUE_CLIENT)),
        "missing client": handshake(server_context(pki, client_certs="required"), client_context(pki)),
    }
    for what, outcome in results.items():
        print(f"{what:28} {outcome}")
    good = [k for k in results if k.startswith(("server cert", "mutual"))]
    for k in good:
        assert results[k].get("data") == b"ok" and "server_error" not in results[k], (k, results[k])
    assert results["mutual TLS, client-a"]["peer"] == CLIENTS[0]
    assert "Hostname mismatch" in results["wrong host name"]["client_error"]
    assert "expired" in results["expired server"]["client_error"]
    assert "unable to get local issuer" in results["rogue server"]["client_error"]
    assert "expired" in results["expired client"]["server_error"]
    assert "unable to get local issuer" in results["rogue client"]["server_error"]
    assert "certificate" in results["missing client"]["server_error"]
    print("all certificates behave as intended")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        check_certificates(d)
    sys.exit(0)
