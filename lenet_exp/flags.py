"""Hydra's command-line flags, read before Hydra starts: `--multirun`, `--cfg job`, `--info`, `--help` and the rest,
read as Hydra reads them wherever they were typed, and checked, so that each does what Hydra documents or is refused
in one line. (The flags are Hydra 1.3's, declared here as its own parser declares them; a test holds the two equal.)"""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

import hydra
from hydra.core.plugins import Plugins
from hydra.plugins.completion_plugin import CompletionPlugin
from omegaconf import DictConfig, OmegaConf

from lenet_exp.config import group_options
from lenet_exp.errors import ConfigError
from lenet_exp.words import one_line

# Hydra's commands besides a run (argparse dest -> what it does), in the order a clash names them
COMMANDS = {
    "cfg": "prints one composed config",
    "info": "prints Hydra's information",
    "shell_completion": "installs or removes shell completion",
    "run": "runs one job",
    "multirun": "runs a sweep",
}
# Hydra's flags that would read another config than lenet_exp's own, past its checks (argparse dest -> why not)
REFUSED_FLAGS = {
    "config_path": "lenet_exp reads its own config folder; choose its options with overrides such as optimizer=adam",
    "config_dir": "lenet_exp reads its own config folder; choose its options with overrides such as optimizer=adam",
    "experimental_rerun": "lenet_exp continues a run with resume=<run folder>",
}
INFO = ["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"]


def hydra_flags() -> argparse.ArgumentParser:
    """Hydra's own command line: its flags, and the overrides (`hydra --help` describes each)."""
    parser = argparse.ArgumentParser(add_help=False, description="Hydra")
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--hydra-help", action="store_true")
    parser.add_argument("--version", action="version", version=f"Hydra {hydra.__version__}")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--resolve", action="store_true")
    parser.add_argument("--package", "-p")
    parser.add_argument("--run", "-r", action="store_true")
    parser.add_argument("--multirun", "-m", action="store_true")
    parser.add_argument("--shell-completion", "-sc", action="store_true")
    parser.add_argument("--config-path", "-cp")
    parser.add_argument("--config-name", "-cn")
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", const="all", nargs="?", action="store", choices=INFO)
    return parser


def parse_command(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Hydra's flags and the overrides, read by Hydra's own parser wherever they were typed; also the flags as Hydra
    reads them back (`--cfg=job`), ahead of the overrides. A mistake in a flag is one line, not Hydra's usage text.

    `--info` without one of its values takes `all`, so that it never swallows the override after it.
    """
    parser = hydra_flags()

    def refuse(message: str) -> NoReturn:
        raise ConfigError(f"{message}; python -m lenet_exp --hydra-help lists the flags")

    parser.error = refuse
    info = next(a for a in parser._actions if a.dest == "info")
    args = [
        "--info=all" if a in info.option_strings and args[i + 1 : i + 2] not in ([c] for c in info.choices) else a
        for i, a in enumerate(args)
    ]
    ns = parser.parse_intermixed_args(args)
    flags = [
        a.option_strings[0] if getattr(ns, a.dest) is True else f"{a.option_strings[0]}={getattr(ns, a.dest)}"
        for a in parser._actions
        if a.option_strings and getattr(ns, a.dest, None) not in (None, False)
    ]
    return ns, flags


def check_flags(ns: argparse.Namespace) -> None:
    """Each of Hydra's flags does what Hydra documents, or is refused here: one command at a time, --package and
    --resolve only with the --cfg they shape, shell completion with its one subcommand, lenet_exp's own config."""
    given = [d for d in COMMANDS if getattr(ns, d) not in (None, False)]
    if len(given) > 1:
        raise ConfigError(f"{flag(given[0])} {COMMANDS[given[0]]}: drop {flag(given[1])}")
    for shaping in ("package", "resolve"):
        if getattr(ns, shaping) not in (None, False) and ns.cfg is None and not (shaping == "resolve" and ns.help):
            raise ConfigError(f"{flag(shaping)} shapes the config that --cfg prints: add --cfg job (or hydra, all)")
    if refused := next((d for d in REFUSED_FLAGS if getattr(ns, d) is not None), None):
        raise ConfigError(f"{flag(refused)}: {REFUSED_FLAGS[refused]}")
    primary = group_options()[""]
    if ns.config_name is not None and ns.config_name not in primary:
        raise ConfigError(
            f"--config-name={ns.config_name}: lenet_exp's primary config is {' or '.join(primary)}; "
            "choose its options with overrides such as optimizer=adam"
        )
    if ns.shell_completion:
        check_completion(ns.overrides)


def check_completion(overrides: list[str]) -> None:
    """--shell-completion takes one subcommand (install=bash), which Hydra reads; it is no override of lenet_exp's."""
    shells = sorted(p.provides() for p in Plugins.instance().discover(CompletionPlugin))
    commands = ("install", "uninstall", *(("query",) if "COMP_LINE" in os.environ else ()))  # query: the shell's
    if len(overrides) != 1 or overrides[0] not in [f"{c}={shell}" for c in commands for shell in shells]:
        raise ConfigError(
            f"--shell-completion takes one subcommand: install=SHELL or uninstall=SHELL (SHELL: {', '.join(shells)}), "
            f"not {one_line(' '.join(overrides) or 'none', 80)}"
        )


def flag(dest: str) -> str:
    """The flag of an argparse destination: `--shell-completion` of `shell_completion`."""
    return "--" + dest.replace("_", "-")


def check_package(ns: argparse.Namespace, cfg: DictConfig) -> None:
    """--package names a part of the config that --cfg prints (`hydra...` for --cfg hydra), or Hydra fails on it."""
    if ns.package in (None, "_global_"):
        return
    in_hydra, absent = ns.package.split(".")[0] == "hydra", object()
    shown = {"job": not in_hydra, "hydra": in_hydra, "all": True}[ns.cfg]
    if not shown or OmegaConf.select(cfg, ns.package, default=absent) is absent:
        raise ConfigError(
            f"--package={ns.package}: no such part of the config that --cfg {ns.cfg} prints; "
            f"python -m lenet_exp --cfg {ns.cfg} shows it whole"
        )
