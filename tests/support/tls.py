"""A throwaway CA and a server certificate signed by it, made with openssl, for tests that need
a client to verify a server (the in-cluster Kubernetes client checks the API server)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerCert", "make_server_cert"]


@dataclass(frozen=True)
class ServerCert:
    ca: Path  # the CA certificate clients trust
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_server_cert(directory: Path, ips: Sequence[str]) -> ServerCert:
    """A CA and a server certificate for `ips` (subjectAltName IP entries) in `directory`."""
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=test-ca", "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kubernetes",
             "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n"
                   "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))
    return ServerCert(ca, cert, key)
