"""Every way of starting the command goes through the same checks: Hydra's own flags do what Hydra documents or are
refused in one line, and a refused command writes nothing."""

import json

import pytest
from helpers import SMALL, refused, run_cli, snapshot

LONG = "k" * 300
DEEP = "/".join(["d" * 200] * 21)  # a path past the 4096 bytes a path may have
SWEEP = [*SMALL, "trainer.epochs=1", "data.limit_train=256", "data.limit_test=128"]

REFUSED = {  # arguments (SMALL is added where they could train) -> what the one line says
    "--multirun seed=0,0": "seed=0,0: seed takes the value 0 twice; give each value once",
    "--multirun optimizer.lr=0.1,0.10": "optimizer.lr takes the value 0.1 twice",
    "--multirun activation=relu,relu": "activation takes the value relu twice",
    "--multirun seed=choice(3,4,3)": "seed takes the value 3 twice",
    "-m optimizer.lr=0.1,0.2 optimizer.lr=0.3": "optimizer.lr is given twice (optimizer.lr=0.1,0.2 too",
    "-m seed=1 ++seed=2,3": "++seed=2,3: seed is given twice (seed=1 too)",
    "--multirun seed=0,00": "seed=00: seed reads it as 0, the same as seed=0, so one job would train twice",
    "-m hparams_search=halving data.batch_size=64,064": "data.batch_size reads it as 64, the same as",
    "-m hparams_search=halving hparams_search=optuna": "group hparams_search is given twice (hparams_search=halving",
    "optimizer=sgd +optimizer=adam": "+optimizer=adam: the config group optimizer is given twice (optimizer=sgd",
    "-m seed=1,2 hydra/launcher=fused +hydra/launcher=parallel": "the config group hydra/launcher is given twice",
    "-p job": "--package shapes the config that --cfg prints: add --cfg job",
    "--cfg job -p hydra.run": "--package=hydra.run: no such part of the config that --cfg job prints",
    "--resolve": "--resolve shapes the config that --cfg prints",
    "-sc": "--shell-completion takes one subcommand: install=SHELL or uninstall=SHELL (SHELL: bash, fish, zsh)",
    "--shell-completion optimizer=adam": "--shell-completion takes one subcommand",
    "seed=1 --cfg": "argument --cfg/-c: expected one argument; python -m lenet_exp --hydra-help lists the flags",
    "seed=1 -p": "argument --package/-p: expected one argument",
    "--foo": "unrecognized arguments: --foo",
    "--info=bogus": "argument --info/-i: invalid choice: 'bogus'",
    "--run --multirun seed=1,2": "--run runs one job: drop --multirun",
    "-cn nope": "--config-name=nope: lenet_exp's primary config is config",
    "--config-name ../../conf/config": "--config-name=../../conf/config: lenet_exp's primary config is config",
    "-cp /tmp": "--config-path: lenet_exp reads its own config folder",
    "-cd . --multirun seed=1,2": "--config-dir: lenet_exp reads its own config folder",
    "--experimental-rerun x.pickle": "--experimental-rerun: lenet_exp continues a run with resume=<run folder>",
    "=3": "=3: no key before '='",
    "hparams_search=[halving,optuna]": "hparams_search=[halving,optuna]: unknown option of group 'hparams_search'",
    "--multirun optimizer=sgd,adamx": "optimizer=sgd,adamx: adamx is not an option of group 'optimizer'",
    f"+optimizer.{LONG}=1": "a key longer than a file name may be (250 bytes)",
    f"hydra.run.dir={DEEP}": "hydra.run.dir: the path d",
    "--multirun seed=1,2 +hydra.launcher.foo=1 hydra.sweep.dir=s": "hydra.launcher.foo: no such key for this launcher",
    "--multirun hparams_search=halving optimizer.lr=0.1,0.3 hydra.sweeper.etaa=2 hydra.sweep.dir=s": (
        "hydra.sweeper.etaa: no such key for this sweeper. Did you mean hydra.sweeper.eta?"
    ),
    "--multirun data=fashion_mnist,mnist data.root=d hydra.sweep.dir=s": "mnist: files not found in d/MNIST/raw",
}


@pytest.mark.parametrize("args", REFUSED)
def test_a_refused_command_says_why_in_one_line_and_writes_nothing(tmp_path, args):
    extra = [] if "-sc" in args or "shell-completion" in args else SMALL
    proc = refused(*extra, *args.split(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert REFUSED[args] in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,shown",
    [
        ("--version", "Hydra 1."),
        ("--shell-completion install=bash", "complete -o nospace -o default -F hydra_bash_completion"),
        ("--cfg hydra -p hydra.run", "# @package hydra.run\ndir: outputs/"),
        ("--info defaults optimizer=adam", "optimizer/adam"),
        ("optimizer.lr=0.5 --cfg job --resolve", "lr: 0.5"),
        ("--hydra-help optimizer.lr=0.5 hydra/launcher=parallel", "Hydra (1."),
        ("--hydra-help -m optimizer=sgd,adam", "== Flags =="),
    ],
)
def test_hydra_flags_that_print_print_and_train_nothing(tmp_path, args, shown):
    proc = run_cli(*args.split(), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert shown in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("finished")
    proc = run_cli(*SWEEP, "--multirun", "seed=0,1", "hydra.sweep.dir=s", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.mark.parametrize(
    "args,message",
    [
        ("--multirun seed=2,3", "holds a sweep of other settings"),
        ("-m -cn config seed=2,3", "holds a sweep of other settings"),
        ("--run hydra.mode=MULTIRUN seed=2,3", "holds a sweep of other settings"),
        ("-m --config-dir . seed=2,3", "--config-dir: lenet_exp reads its own config folder"),
        ("-m --config-path . seed=2,3", "--config-path: lenet_exp reads its own config folder"),
        ("-m --experimental-rerun s/0_seed=0/.hydra/config.pickle", "--experimental-rerun: lenet_exp continues a run"),
    ],
)
def test_a_finished_sweep_refuses_other_values_however_it_is_started(finished_sweep, args, message):
    before = snapshot(finished_sweep)
    proc = run_cli(*SWEEP, *args.split(), "hydra.sweep.dir=s", cwd=finished_sweep)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert snapshot(finished_sweep) == before


@pytest.mark.parametrize("damage", [{"overrides": 5}, {"swept": {"seed": 1}}, {"sweeper": []}, {"overrides": [1, 2]}])
def test_a_damaged_sweep_record_is_named_in_one_line(finished_sweep, damage):
    record = finished_sweep / "s" / "sweep.json"
    kept = record.read_bytes()
    record.write_text(json.dumps({**json.loads(kept), **damage}))
    try:
        before = snapshot(finished_sweep)
        proc = run_cli(*SWEEP, "--multirun", "seed=0,1", "hydra.sweep.dir=s", cwd=finished_sweep)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"sweep.json: damaged ({next(iter(damage))} is not a" in proc.stderr
        assert "restore the file, or choose a new hydra.sweep.dir" in proc.stderr
        assert snapshot(finished_sweep) == before
    finally:
        record.write_bytes(kept)


def test_resume_refuses_another_applications_run_and_takes_a_quoted_folder(tmp_path, fashion_mnist):
    foreign = tmp_path / "foreign" / ".hydra"
    foreign.mkdir(parents=True)
    (foreign / "config.yaml").write_text("db:\n  user: x\n")
    (foreign / "overrides.yaml").write_text("- db.user=x\n")
    before = snapshot(tmp_path)
    proc = refused("resume=foreign", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "resume=foreign: not a lenet_exp run (its foreign/.hydra/config.yaml holds db" in proc.stderr
    assert snapshot(tmp_path) == before
    (foreign / "config.yaml").unlink()  # another application's record: overrides.yaml alone
    proc = refused("resume=foreign", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "resume=foreign: not a lenet_exp run (its .hydra/ holds overrides.yaml but no config.yaml" in proc.stderr

    small = [*SMALL, "data.limit_train=256", "data.limit_test=128"]
    proc = run_cli(*small, "trainer.epochs=1", "hydra.run.dir='my runs/a'", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(f"resume='{tmp_path / 'my runs' / 'a'}'", "trainer.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "my runs" / "a" / "metrics.json").read_text())["epochs_completed"] == 2
    before = snapshot(tmp_path)
    proc = run_cli(f"resume='{tmp_path / 'my runs' / 'a'}'", "trainer.epochs=3,4", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr  # not a hint at a sweep in a run folder
    assert (
        proc.stderr == "Error: trainer.epochs=3,4: resume= continues one run, so each key takes one value; give one\n"
    )
    assert snapshot(tmp_path) == before


def test_a_file_where_the_run_keeps_its_record_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".hydra").write_text("not a folder")
    before = snapshot(tmp_path)
    proc = run_cli(*SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and proc.stderr == "Error: hydra.run.dir=run/.hydra: is a file, not a folder; give a folder path\n"
    )
    assert snapshot(tmp_path) == before


def test_lenet_exps_reading_of_hydras_flags_is_hydras_own():
    """flags.py declares Hydra's flags, so that the package needs none of Hydra's private modules: this holds its
    declaration to Hydra's own parser, flag by flag (names, destinations, values, defaults)."""
    from hydra._internal.utils import get_args_parser

    from lenet_exp.flags import hydra_flags

    def shape(parser):
        return sorted(
            (tuple(a.option_strings), a.dest, a.nargs, tuple(a.choices or ()), a.const, type(a).__name__, a.default)
            for a in parser._actions
        )

    assert shape(hydra_flags()) == shape(get_args_parser())
