"""``kube2etcd`` command line: ``main(argv) -> int``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from skydns.options import ConfigError

from . import config as cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = cfg.load(args, os.environ)
    except ConfigError as exc:
        print(f"kube2etcd: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # we log watch failures ourselves
    from .app import serve  # imported late so that --help and bad flags stay fast

    try:
        return asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"kube2etcd: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kube2etcd: error: {exc}", file=sys.stderr)
        return 1
