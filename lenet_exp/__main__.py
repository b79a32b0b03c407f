"""Command line: train one configuration, or sweep many with --multirun.

    python -m lenet_exp                                   # the textbook run (same as `lenet-exp`)
    python -m lenet_exp optimizer.lr=0.3 activation=relu data=mnist device=cuda
    python -m lenet_exp --multirun optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu
    python -m lenet_exp resume=outputs/2026-11-27/21-40-00  # continue an interrupted run in place
    python -m lenet_exp --help                            # config groups and options

Before Hydra starts, the command checks the overrides and its output folder, so a refused command
writes nothing; torch loads only once a run is about to start.
"""

from __future__ import annotations

import signal
import sys

# Ctrl-C while the modules below load ends in one line, not a traceback; main() restores Python's own handler.
signal.signal(
    signal.SIGINT,
    lambda signum, frame: (sys.stderr.write("Interrupted by SIGINT: nothing was written.\n"), sys.exit(130)),
)

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import hydra
import yaml
from omegaconf import OmegaConf

from lenet_exp import run_folder, sweep
from lenet_exp.config import CONFIG_PATH, ConfigError, check_folder_path, check_overrides, is_hydra_override, quoted
from lenet_exp.task import LAUNCHER_PID, task
from lenet_exp.words import one_line

# Hydra's flags that only print (no run), and those that take a value
NO_RUN_FLAGS = tuple(
    "-h --help --hydra-help --version -c --cfg -i --info -sc --shell-completion -p --package --resolve".split()
)
VALUE_FLAGS = tuple(
    "-c --cfg -p --package -cp --config-path -cn --config-name -cd --config-dir --experimental-rerun".split()
)

hydra_task = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(task)


def expand_resume(argv: list[str]) -> list[str]:
    """Turn `resume=<folder>` into that run's own overrides plus `hydra.run.dir=<folder>`."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    if len(given) > 1:
        raise ConfigError(f"resume= given {len(given)} times; give one run folder")
    folder = Path(given[0].split("=", 1)[1])
    saved = folder / run_folder.RECORD / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={folder}: not a run folder (no {saved}); give the folder of an earlier run")
    if clash := [
        a
        for a in argv[1:]
        if a.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) or a in ("-m", "--multirun")
    ]:
        raise ConfigError(f"resume= continues a run in its own folder: drop {clash[0]}")
    try:
        earlier = yaml.safe_load(saved.read_text()) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"resume={folder}: {saved} is unreadable ({one_line(e)[:200]})") from None
    if not isinstance(earlier, list) or not all(isinstance(o, str) for o in earlier):
        raise ConfigError(f"resume={folder}: {saved} is not a list of overrides")
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    keys = {a.split("=", 1)[0] for a in rest}
    # a search job's own hparams_search chose the sweeper that ran it; continuing the one run searches nothing
    earlier = [
        o for o in earlier if o.split("=", 1)[0] not in keys and o.split("=", 1)[0].lstrip("+~") != "hparams_search"
    ]
    return [argv[0], *earlier, *rest, f"hydra.run.dir={quoted(str(folder))}"]


def split_flags(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Hydra's flags (with their values), the overrides, and the flags that must come last, wherever they were typed.

    `--info` without a value goes after the overrides, where Hydra's parser cannot take an override for its value.
    """
    flags, overrides, last, i = [], [], [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            info_value = (
                arg in ("-i", "--info")
                and i + 1 < len(args)
                and "=" not in args[i + 1]
                and not args[i + 1].startswith("-")
            )
            takes_value = arg in VALUE_FLAGS or info_value
            (last if arg in ("-i", "--info") and not info_value else flags).extend(
                args[i : i + 2] if takes_value else [arg]
            )
            i += 2 if takes_value else 1
        else:
            overrides.append(arg)
            i += 1
    return flags, overrides, last


def other_primary_config(flags: list[str]) -> bool:
    """A config folder or a primary config other than lenet_exp's own: composing and checking it is Hydra's job."""
    named = {flags[i]: flags[i + 1] if i + 1 < len(flags) else "" for i in range(len(flags)) if flags[i] in VALUE_FLAGS}
    named.update(f.split("=", 1) for f in flags if f.startswith("--config") and "=" in f)
    if any(k in named for k in ("-cp", "--config-path", "-cd", "--config-dir")):
        return True
    return any(named.get(k, "config") != "config" for k in ("-cn", "--config-name"))


@contextmanager
def output_folder(flags: list[str], overrides: list[str]):
    """Check the overrides and the output folder before Hydra writes anything; yields overrides that pin the folder.

    A default folder (`outputs/<date>/<time>`) is made new for this command, with a suffix when another
    command took that name in the same second, and removed again if nothing was written into it; a
    sweep folder stays locked for the whole sweep.
    """
    if other_primary_config(flags):
        yield []
        return
    multirun = any(f in ("-m", "--multirun") for f in flags) or "hydra.mode=MULTIRUN" in overrides
    shows = [f for f in flags if f in NO_RUN_FLAGS]
    if shows and multirun and any(f in ("-c", "--cfg", "-p", "--package", "--resolve") for f in shows):
        raise ConfigError(f"{shows[0]} prints one composed config: drop --multirun (and give one value per key)")
    printing = next((f for f in shows if f in ("-c", "--cfg", "-p", "--package", "--resolve", "-i", "--info")), None)
    cfg = check_overrides(overrides, multirun=multirun, printing=printing)
    if shows:
        yield []
        return
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
            yield pin
            return
        with run_folder.locked(folder):
            sweep.check_sweep_folder(folder, [a for a in overrides if not is_hydra_override(a)], cfg)
            sweep.record_sweep(folder, [a for a in overrides if not is_hydra_override(a)], cfg)
            yield pin
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
        flags, overrides, last = split_flags(argv[1:])
        with output_folder(flags, overrides) as pin:
            sys.argv = [argv[0], *flags, *overrides, *pin, *last]
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
