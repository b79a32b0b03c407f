"""Command line: train one configuration, or sweep many with --multirun.

    python -m lenet_exp                                   # the textbook run (same as `lenet-exp`)
    python -m lenet_exp optimizer.lr=0.3 activation=relu data=mnist device=cuda
    python -m lenet_exp --multirun optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu
    python -m lenet_exp resume=outputs/2026-11-27/21-40-00  # continue an interrupted run in place
    python -m lenet_exp --help                            # config groups and options

Before Hydra starts, the command reads Hydra's flags with Hydra's own parser and checks them, the overrides and
its output folder, so a refused command writes nothing; torch loads only once a run is about to start.
"""

from __future__ import annotations

import signal
import sys

# Ctrl-C while the modules below load ends in one line, not a traceback; main() restores Python's own handler.
signal.signal(
    signal.SIGINT,
    lambda signum, frame: (sys.stderr.write("Interrupted by SIGINT: nothing was written.\n"), sys.exit(130)),
)

import argparse
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

import hydra
import yaml
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.completion_plugin import CompletionPlugin
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lenet_exp import run_folder, sweep
from lenet_exp.config import (
    CONFIG_PATH,
    ConfigError,
    check_folder_path,
    check_overrides,
    group_options,
    is_hydra_override,
    quoted,
)
from lenet_exp.schema import Settings
from lenet_exp.task import LAUNCHER_PID, task, worker_deaths_in_one_line
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

hydra_task = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(task)


def expand_resume(argv: list[str]) -> list[str]:
    """Turn `resume=<folder>` into that run's own overrides plus `hydra.run.dir=<folder>`."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    if len(given) > 1:
        raise ConfigError(f"resume= given {len(given)} times; give one run folder")
    folder = run_folder_named(given[0])
    saved = folder / run_folder.RECORD / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={folder}: not a run folder (no {saved}); give the folder of an earlier run")
    check_own_run(folder)
    if clash := [
        a
        for a in argv[1:]
        if a.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) or a in ("-m", "--multirun")
    ]:
        raise ConfigError(f"resume= continues a run in its own folder: drop {clash[0]}")
    if sweeps := [a for a in argv[1:] if "=" in a and not a.startswith("resume=") and is_sweep(a)]:
        raise ConfigError(f"{sweeps[0]}: resume= continues one run, so each key takes one value; give one")
    try:
        earlier = yaml.safe_load(saved.read_text()) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"resume={folder}: {saved} is unreadable ({one_line(e)[:200]})") from None
    if not isinstance(earlier, list) or not all(isinstance(o, str) for o in earlier):
        raise ConfigError(f"resume={folder}: {saved} is not a list of overrides")
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    keys = {sweep.key_of(a) for a in rest} | {"hparams_search"}  # a search job's hparams_search chose the sweeper
    kept = [o for o in sweep.preset_settings(folder) if sweep.key_of(o) not in keys | set(map(sweep.key_of, earlier))]
    earlier = [o for o in earlier if sweep.key_of(o) not in keys]  # that ran it; continuing the one run searches none
    return [argv[0], *earlier, *kept, *rest, f"hydra.run.dir={quoted(str(folder))}"]


def is_sweep(arg: str) -> bool:
    """`key=a,b` or a sweep function: several values (an override Hydra cannot read is judged later)."""
    try:
        return OverridesParser.create().parse_override(arg).is_sweep_override()
    except HydraException:
        return False


def run_folder_named(arg: str) -> Path:
    """The folder `resume=<folder>` names: as typed, else as Hydra reads a quoted value (`resume="'my runs/a'"`)."""
    typed = Path(arg.split("=", 1)[1])
    try:
        value = OverridesParser.create().parse_override(arg).value()
    except HydraException:
        return typed
    return typed if typed.is_dir() or not isinstance(value, str) else Path(value)


def check_own_run(folder: Path) -> None:
    """Refuse a run folder another Hydra application wrote: its saved config holds keys lenet_exp does not have."""
    saved = folder / run_folder.RECORD / "config.yaml"
    try:
        keys = list(run_folder.load_yaml(saved) or {})
    except (*run_folder.YAML_ERRORS, TypeError):
        return  # the run's own record is judged when the run starts
    if others := [k for k in keys if k not in {f.name for f in fields(Settings)}]:
        raise ConfigError(
            f"resume={folder}: not a lenet_exp run (its {saved} holds {', '.join(map(str, others[:3]))}, keys "
            "lenet_exp does not have); give the folder of an earlier lenet_exp run"
        )


def parse_command(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Hydra's flags and the overrides, read by Hydra's own parser wherever they were typed; also the flags as Hydra
    reads them back (`--cfg=job`), ahead of the overrides. A mistake in a flag is one line, not Hydra's usage text.

    `--info` without one of its values takes `all`, so that it never swallows the override after it.
    """
    parser = get_args_parser()

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


@contextmanager
def output_folder(ns: argparse.Namespace, overrides: list[str]):
    """Check the overrides and the output folder before Hydra writes anything; yields overrides that pin the folder.

    A default folder (`outputs/<date>/<time>`) is made new for this command, with a suffix when another
    command took that name in the same second, and removed again if nothing was written into it; a
    sweep folder stays locked for the whole sweep.
    """
    check_flags(ns)
    if ns.shell_completion:
        yield []
        return
    printing = "--cfg" if ns.cfg else "--info" if ns.info else None
    cfg = check_overrides(overrides, multirun=ns.multirun or None, printing=printing)
    if printing or ns.help or ns.hydra_help:
        check_package(ns, cfg)
        yield []
        return
    multirun = ns.multirun or OmegaConf.select(cfg, "hydra.mode") == RunMode.MULTIRUN  # Hydra's own choice
    sweep.check_run_mode(cfg, overrides, multirun)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = Path(str(OmegaConf.select(cfg, key, throw_on_missing=True)))
    except Exception as e:  # an interpolation that cannot be resolved
        raise ConfigError(f"{key}: cannot be resolved ({one_line(e)})") from None
    check_folder_path(folder, key)
    explicit = any(a.lstrip("+").startswith(f"{key}=") for a in overrides)
    made = run_folder.first_missing(folder)
    folder = run_folder.make_folder(folder, key) if explicit else run_folder.claim_new_folder(folder)
    pin = [] if explicit else [f"{key}={quoted(str(folder))}"]
    try:
        if not multirun:
            check_folder_path(folder / run_folder.RECORD, key)  # where Hydra keeps the run's record
            yield pin
            return
        with run_folder.locked(folder):
            sweep.check_sweep_folder(folder, [a for a in overrides if not is_hydra_override(a)], cfg)
            fresh = not (folder / sweep.SWEEP_RECORD).exists()
            sweep.record_sweep(folder, [a for a in overrides if not is_hydra_override(a)], cfg)
            try:
                yield pin
            finally:  # Hydra refused to start the sweep: no record of a sweep that never ran
                if fresh and [p.name for p in folder.iterdir()] == [sweep.SWEEP_RECORD]:
                    (folder / sweep.SWEEP_RECORD).unlink()
    finally:
        run_folder.remove_empty(folder, up_to=made)


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(
        signal.SIGPIPE, signal.SIG_DFL
    )  # `python -m lenet_exp --help | head` ends quietly, as other commands do
    os.environ[LAUNCHER_PID] = (
        f"{socket.gethostname()}:{os.getpid()}"  # a job on another machine (SLURM) has no sweep process to watch
    )
    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks: the error is reported once
    try:
        argv = expand_resume(sys.argv)
        ns, flags = parse_command(argv[1:])
        with output_folder(ns, ns.overrides) as pin:
            # Hydra composes its flags' help without lenet_exp's config, so only hydra.* overrides can apply there
            overrides = [a for a in ns.overrides if is_hydra_override(a)] if ns.hydra_help else ns.overrides
            sys.argv = [argv[0], *flags, *overrides, *pin]
            with worker_deaths_in_one_line(sys.argv):
                hydra_task()
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(
            "Interrupted by SIGINT: nothing is left half-written; rerun the same command to continue.", file=sys.stderr
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
