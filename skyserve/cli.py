"""``skyserve`` command line: ``main(argv) -> int``.

``skyserve [OPTIONS]`` runs the server; ``skyserve register|unregister|records`` manage
records in etcd (see ``register``); ``skyserve dnssec ds`` prints a zone key's DS record.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from skydns.options import ConfigError

from . import config as cfg
from . import eventloop


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("register", "unregister", "records"):
        from .register import main as register_main

        return register_main(args[0], args[1:], os.environ)
    if args and args[0] == "dnssec":
        from .dnssec.command import main as dnssec_main

        return dnssec_main(args[1:])
    try:
        config = cfg.load(args, os.environ)
    except ConfigError as exc:
        print(f"skyserve: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .app import serve  # imported late so that --help and bad flags stay fast
    from .workers import serve_workers

    try:
        if config.workers > 1:
            return serve_workers(config, args, os.environ)
        return eventloop.run(serve(config, args, os.environ))
    except OSError as exc:
        print(f"skyserve: error: {exc}", file=sys.stderr)
        return 1
