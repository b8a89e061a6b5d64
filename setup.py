"""Packaging for skyserve (etcd-backed DNS server) and kube2etcd (Kubernetes bridge)."""

from setuptools import find_packages, setup

# scripts/bench-dns --charts and scripts/dashboard-snapshot draw with it; the benchmarks
# themselves run on any python3 without it.
MATPLOTLIB = "matplotlib>=3.8,<4"

setup(
    name="skyserve",
    version="0.1.0",
    description="SkyDNS-format DNS from etcd, and a Kubernetes-to-etcd bridge",
    python_requires=">=3.11",
    packages=find_packages(include=["skydns", "skydns.*", "skyserve", "skyserve.*",
                                    "kube2etcd", "kube2etcd.*"]),
    package_data={"skydns": ["py.typed"], "skyserve": ["py.typed"], "kube2etcd": ["py.typed"]},
    install_requires=[
        # `import etcd3`; the PyPI `etcd3` release cannot import with protobuf >= 4
        # (see docs/architecture.md). Never install both.
        "cslab-etcd3==0.12.1",
        "protobuf>=4,<8",
        "grpcio>=1.66,<2",
        "dnslib==0.9.26",
        "tenacity>=9,<10",
        "kubernetes>=37,<38",
        "prometheus-client>=0.26,<1",
        # SipHash-2-4 for RFC 9018 DNS server cookies (a C extension: hashlib's interface)
        "siphash24>=1.9,<2",
        # ECDSA P-256 and Ed25519 signatures for online DNSSEC (skyserve.dnssec)
        "cryptography>=46,<51",
    ],
    extras_require={
        "test": [
            "pytest>=9,<10",
            "pytest-timeout>=2.4,<3",
            "dnspython>=2.9,<3",
            "kubernetes-validate>=1.37,<2",
        ],
        "dev": [
            "mypy>=2,<3",
            "ruff>=0.17,<1",
            "types-protobuf",
            "types-PyYAML",  # scripts/render-prometheusrule
            MATPLOTLIB,  # scripts/dashboard-snapshot; mypy checks bench-dns --charts too
        ],
        "bench": [MATPLOTLIB],
    },
    entry_points={
        "console_scripts": [
            "skyserve=skyserve.cli:main",
            "kube2etcd=kube2etcd.cli:main",
        ],
    },
)
