"""Command-line options that can also come from a TOML file and the environment.

Precedence, lowest first: the default, the config file, the environment
(``PREFIX_NAME_WITH_UNDERSCORES``), the command line. Each option names a converter that
takes a string (flag, environment) or a TOML value and returns the checked value, raising
ValueError with a message; the loader turns that into ``ConfigError`` naming the option
and where the bad value came from. Shared by skyserve and kube2etcd.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Converter = Callable[[Any], Any]


class ConfigError(ValueError):
    """A bad option value; the message names the option and its source."""


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # as on the command line, without the dashes
    convert: Converter
    default: Any
    help: str
    repeat: bool = False  # a list: the flag repeats, env/TOML may hold several, separated
    separator: str = ","

    @property
    def env_suffix(self) -> str:
        return self.name.upper().replace("-", "_")


def load(
    prog: str, options: Sequence[Option], argv: Sequence[str], env: Mapping[str, str],
    env_prefix: str, description: str = "", epilog: str = "",
) -> dict[str, Any]:
    """Resolve every option; the result is keyed by name with dashes as underscores.

    ``epilog`` ends ``--help`` as written, line breaks kept (a list of subcommands)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    for opt in options:
        parser.add_argument(
            f"--{opt.name}", action="append" if opt.repeat else "store",
            default=argparse.SUPPRESS, help=f"{opt.help} (default: {opt.default!r})",
        )
    flags = vars(parser.parse_args(argv))
    values: dict[str, Any] = {o.name: o.default for o in options}
    path = flags.pop("config", None) or env.get(f"{env_prefix}CONFIG")
    if path:
        _apply(values, options, _read_toml(path), f"config file {path}")
    known = {o.env_suffix: o for o in options}
    for key, raw in env.items():
        if key.startswith(env_prefix) and key[len(env_prefix):] in known:
            opt = known[key[len(env_prefix):]]
            _apply(values, [opt], {opt.name: raw}, f"environment {key}")
    given = {name.replace("_", "-"): v for name, v in flags.items()}
    _apply(values, options, given, "flag")
    return {name.replace("-", "_"): value for name, value in values.items()}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return {k.replace("_", "-"): v for k, v in data.items()}


def _apply(
    values: dict[str, Any], options: Sequence[Option], given: Mapping[str, Any], source: str
) -> None:
    by_name = {o.name: o for o in options}
    for name, raw in given.items():
        opt = by_name.get(name)
        if opt is None:
            raise ConfigError(f"{source}: unknown option {name!r}")
        try:
            values[name] = _convert(opt, raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source} {'--' + name}: {exc}") from None


def _convert(opt: Option, raw: Any) -> Any:
    if not opt.repeat:
        return opt.convert(raw)
    items = raw if isinstance(raw, list) else [raw]
    out: list[Any] = []
    for item in items:
        parts = item.split(opt.separator) if isinstance(item, str) else [item]
        out.extend(opt.convert(p.strip() if isinstance(p, str) else p) for p in parts if p != "")
    if not out:
        raise ValueError("needs at least one value")
    return out


# -- converters -----------------------------------------------------------------------


def integer(low: int, high: int) -> Converter:
    def convert(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(f"expected an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return value

    return convert


def seconds(raw: Any) -> float:
    """``5``, ``2.5``, ``'300s'``, ``'5m'``, ``'1h'`` -> seconds (a float >= 0)."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a duration, got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = str(raw).strip()
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            value = float(text[: len(text) - len(unit)]) * scale.get(unit, 1.0)
        except ValueError:
            raise ValueError(f"expected a duration like 5s, 2m or 1h, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"duration must not be negative: {raw!r}")
    return value


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def choice(*allowed: str) -> Converter:
    def convert(raw: Any) -> str:
        value = text(raw)
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return convert
