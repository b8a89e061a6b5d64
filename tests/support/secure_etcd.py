"""Secured etcds for tests: a CA and certificates made with openssl, an etcd serving https
only with client certificates, and etcdctl (API v3) to set up and read them independently
of the etcd3 client under test."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import etcd3
import grpc

from tests.support.etcd_server import EtcdServer

HOST = "127.0.0.1"
PASSWORD = "s3cret-pw"  # of user root in the auth-enabled etcd


@dataclass(frozen=True)
class Certs:
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: does not trust etcd's certificate


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=20)


def make_certs(d: Path) -> Certs:
    """A CA, a server certificate for IP 127.0.0.1, a client certificate (EC P-256, 1 day)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", d / f"{ca}-key.pem", "-out", d / f"{ca}.pem",
                 "-days", "1", "-subj", f"/CN=skyserve-test-{ca}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    exts = {"server": "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            "client": "extendedKeyUsage=clientAuth\n"}
    for name, ext in exts.items():
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", "-new", *ec, "-keyout", d / f"{name}-key.pem", "-out", d / f"{name}.csr",
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                 "-CAkey", d / "ca-key.pem", "-CAcreateserial", "-days", "1",
                 "-out", d / f"{name}.pem", "-extfile", d / f"{name}.ext")
    return Certs(d / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem",
                 d / "client-key.pem", d / "other-ca.pem")


class TlsEtcd(EtcdServer):
    """An etcd serving clients over https only, requiring a client certificate."""

    def __init__(self, name: str, *, certs: Certs, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.certs = certs

    @property
    def endpoint(self) -> str:
        return f"https://{HOST}:{self.client_port}"

    def argv(self) -> list[str]:
        return [*super().argv(), "--cert-file", str(self.certs.server),
                "--key-file", str(self.certs.server_key),
                "--trusted-ca-file", str(self.certs.ca), "--client-cert-auth"]

    def is_healthy(self, timeout: float = 1.0) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.load_cert_chain(self.certs.client, self.certs.client_key)
        conn = http.client.HTTPSConnection(HOST, self.client_port, timeout=timeout, context=ctx)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()

    def client(self) -> etcd3.MultiEndpointEtcd3Client:
        if self._client is None:
            c = self.certs
            creds = grpc.ssl_channel_credentials(
                c.ca.read_bytes(), c.client_key.read_bytes(), c.client.read_bytes()
            )
            ep = etcd3.Endpoint(HOST, self.client_port, secure=True, creds=creds, time_retry=0.5)
            self._client = etcd3.MultiEndpointEtcd3Client(
                [ep], failover=True, timeout=self.client_timeout
            )
        return self._client


def run_etcdctl(binary: str, endpoint: str, *args: str, certs: Certs | None = None,
            user: str | None = None, timeout: float = 15.0) -> str:
    """Output of ``etcdctl`` (API v3) run with ``args`` against ``endpoint``; asserts success."""
    argv = [binary, "--endpoints", endpoint, "--dial-timeout", "2s",
            "--command-timeout", "5s"]
    if certs is not None:
        argv += ["--cacert", str(certs.ca), "--cert", str(certs.client),
                 "--key", str(certs.client_key)]
    if user is not None:
        argv += ["--user", user]
    done = subprocess.run([*argv, *args], env={**os.environ, "ETCDCTL_API": "3"},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"etcdctl {' '.join(args)}: {done.stderr}"
    return done.stdout + done.stderr  # `endpoint health` reports on stderr
