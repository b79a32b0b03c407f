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
from lenet_exp.signals import interrupted_line  # a few small modules: the handler goes in before the heavy ones

signal.signal(
    signal.SIGINT,
    lambda signum, frame: (sys.stderr.write(interrupted_line(signum, "nothing was written") + "\n"), sys.exit(130)),
)

import argparse
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import hydra
import yaml
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf

from lenet_exp.config import CONFIG_PATH
from lenet_exp.errors import ConfigError
from lenet_exp.files import YAML_ERRORS, load_yaml
from lenet_exp.flags import check_flags, check_package, parse_command
from lenet_exp.folders import claim_new_folder, first_missing, locked, make_folder, remove_empty
from lenet_exp.overrides import is_hydra_override, is_sweep, key_of, parse, quoted, split
from lenet_exp.preflight import check_overrides
from lenet_exp.run_folder import RECORD
from lenet_exp.schema import Settings, check_folder_path
from lenet_exp.signals import Interrupted, stop
from lenet_exp.sweep_checks import check_run_mode, check_sweep_folder
from lenet_exp.sweep_record import SWEEP_RECORD, continue_command, preset_settings, record_sweep
from lenet_exp.task import LAUNCHER_PID, task
from lenet_exp.words import one_line

hydra_task = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(task)


def expand_resume(argv: list[str]) -> list[str]:
    """Turn `resume=<folder>` into that run's own overrides plus `hydra.run.dir=<folder>`."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    if len(given) > 1:
        raise ConfigError(f"resume= given {len(given)} times; give one run folder")
    folder = run_folder_named(given[0])
    saved = folder / RECORD / "overrides.yaml"
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
    keys = {key_of(a) for a in rest} | {"hparams_search"}  # a search job's hparams_search chose the sweeper
    kept = [o for o in preset_settings(folder) if key_of(o) not in keys | set(map(key_of, earlier))]
    earlier = [o for o in earlier if key_of(o) not in keys]  # that ran it; continuing the one run searches none
    return [argv[0], *earlier, *kept, *rest, f"hydra.run.dir={quoted(str(folder))}"]


def run_folder_named(arg: str) -> Path:
    """The folder `resume=<folder>` names: as typed, else as Hydra reads a quoted value (`resume="'my runs/a'"`)."""
    typed = Path(split(arg)[1])
    try:
        value = parse(arg).value()
    except HydraException:
        return typed
    return typed if typed.is_dir() or not isinstance(value, str) else Path(value)


def check_own_run(folder: Path) -> None:
    """Refuse a run folder another Hydra application wrote: its saved config holds keys lenet_exp does not have, or
    there is none (lenet_exp writes config.yaml with overrides.yaml, once its checks pass)."""
    saved = folder / RECORD / "config.yaml"
    if not saved.exists():
        raise ConfigError(
            f"resume={folder}: not a lenet_exp run (its {RECORD}/ holds overrides.yaml but no config.yaml, which "
            "lenet_exp writes with it); give the folder of an earlier lenet_exp run"
        )
    try:
        keys = list(load_yaml(saved) or {})
    except (*YAML_ERRORS, TypeError):
        return  # the run's own record is judged when the run starts
    if others := [k for k in keys if k not in {f.name for f in fields(Settings)}]:
        raise ConfigError(
            f"resume={folder}: not a lenet_exp run (its {saved} holds {', '.join(map(str, others[:3]))}, keys "
            "lenet_exp does not have); give the folder of an earlier lenet_exp run"
        )


@contextmanager
def output_folder(ns: argparse.Namespace, overrides: list[str], made_here: list):
    """Check the overrides and the output folder before Hydra writes anything; yields overrides that pin the folder
    (and adds it to `made_here`, with whether it holds a sweep).

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
    check_run_mode(cfg, overrides, multirun)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = Path(str(OmegaConf.select(cfg, key, throw_on_missing=True)))
    except Exception as e:  # an interpolation that cannot be resolved
        raise ConfigError(f"{key}: cannot be resolved ({one_line(e)})") from None
    check_folder_path(folder, key)
    explicit = any(a.lstrip("+").startswith(f"{key}=") for a in overrides)
    made = first_missing(folder)
    folder = make_folder(folder, key) if explicit else claim_new_folder(folder)
    pin = [] if explicit else [f"{key}={quoted(str(folder))}"]
    made_here.append((folder, multirun))
    try:
        if not multirun:
            check_folder_path(folder / RECORD, key)  # where Hydra keeps the run's record
            yield pin
            return
        with locked(folder):
            check_sweep_folder(folder, [a for a in overrides if not is_hydra_override(a)], cfg)
            fresh = not (folder / SWEEP_RECORD).exists()
            record_sweep(folder, [a for a in overrides if not is_hydra_override(a)], cfg, overrides)
            try:
                yield pin
            finally:  # Hydra refused to start the sweep: no record of a sweep that never ran
                if fresh and [p.name for p in folder.iterdir()] == [SWEEP_RECORD]:
                    (folder / SWEEP_RECORD).unlink()
    finally:
        remove_empty(folder, up_to=made)


def terminated(signum: int, frame) -> None:
    """SIGTERM where no step of a run or a search handles it (Hydra's own work between jobs, the sweep's end): the
    command stops as on Ctrl-C, in one line, rather than dying without a word."""
    raise Interrupted(signum, saved=False)


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python -m lenet_exp --help | head` ends quietly, as others do
    # a job on another machine (Slurm) has no sweep process to watch
    os.environ[LAUNCHER_PID] = f"{socket.gethostname()}:{os.getpid()}"
    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks: the error is reported once
    made_here: list[tuple[Path, bool]] = []
    try:
        argv = expand_resume(sys.argv)
        ns, flags = parse_command(argv[1:])
        with output_folder(ns, ns.overrides, made_here) as pin:
            # Hydra composes its flags' help without lenet_exp's config, so only hydra.* overrides can apply there
            overrides = [a for a in ns.overrides if is_hydra_override(a)] if ns.hydra_help else ns.overrides
            sys.argv = [argv[0], *flags, *overrides, *pin]
            hydra_task()
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, Interrupted) as e:
        stop(getattr(e, "signum", signal.SIGINT), stopped_note(made_here))
    finally:  # the command's work is over, recorded and said: a stop while the interpreter shuts down has none to stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def stopped_note(made_here: list[tuple[Path, bool]]) -> str:
    """What the last line says of a command stopped outside any training step: how to continue what it wrote."""
    for folder, sweep in made_here:
        if sweep and (folder / SWEEP_RECORD).exists():
            return f"nothing is left half-written; continue with: {continue_command(folder, sweep=True)}"
        if not sweep and (folder / RECORD).exists():
            return f"nothing is left half-written; continue with: {continue_command(folder, sweep=False)}"
    return "nothing was written; rerun the same command to start"


if __name__ == "__main__":
    main()
