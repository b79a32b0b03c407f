"""lenet_exp from Python (compose, train, load), a trained run looked at (python -m lenet_exp.evaluate), and single
runs compared (python -m lenet_exp.summarize outputs/)."""

import json
import logging
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO, SMALL, run_cli
from omegaconf import OmegaConf

import lenet_exp
from lenet_exp.errors import ConfigError

TINY = [*SMALL, "data.limit_train=512", "data.limit_test=256", "trainer.epochs=2", "data.val_size=256"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_mnist):
    """A run trained from Python, as the README's example trains it."""
    folder = tmp_path_factory.mktemp("api") / "runs" / "relu"
    cfg = lenet_exp.compose([*TINY, "activation=relu", "optimizer.lr=0.3"])
    return lenet_exp.train(cfg, folder, quiet=True)


def test_compose_checks_as_the_command_does():
    with pytest.raises(ConfigError, match=r"^lr: no such key\. Did you mean optimizer\.lr\?"):
        lenet_exp.compose(["lr=0.1"])
    with pytest.raises(ConfigError, match="several values need --multirun"):
        lenet_exp.compose(["optimizer.lr=0.1,0.3"])
    cfg = lenet_exp.compose(["optimizer=adam"])
    assert cfg.optimizer._target_ == "torch.optim.Adam" and "hydra" not in cfg


def test_what_is_no_config_or_no_run_is_said_in_one_line(tmp_path):
    with pytest.raises(TypeError, match=r"^compose\('optimizer.lr=0.1'\): give a list of overrides"):
        lenet_exp.compose("optimizer.lr=0.1")
    with pytest.raises(ConfigError, match=r"^config: model: missing; start from lenet_exp.compose\(\)"):
        lenet_exp.train({"optimizer": {"lr": 0.1}}, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'none'}: no such folder$"):
        lenet_exp.load(tmp_path / "none")
    with pytest.raises(TypeError, match=r"^compose\(\[1\]\): overrides are texts"):
        lenet_exp.compose([1])
    saved = dict(OmegaConf.to_container(lenet_exp.compose(["trainer.epochs=1"])), bogus=5)
    with pytest.raises(ConfigError, match="^bogus: unknown key; allowed keys: model, activation, optimizer"):
        lenet_exp.train(saved, tmp_path / "bogus")  # a key no run reads: refused, not dropped
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="^config: a mapping of keys, not ListConfig"):
        lenet_exp.train(tmp_path / "list.yaml", tmp_path / "list")
    assert not (tmp_path / "bogus").exists() and not (tmp_path / "list").exists()


def test_train_returns_the_model_its_figures_and_history_in_a_run_folder(trained):
    assert trained.metrics["status"] == "completed" and trained.metrics["epochs_completed"] == 2
    assert len(trained.history["val_acc"]) == 2 and trained.history["test_acc"][-1] == trained.metrics["test_acc"]
    for name in ("metrics.json", "train.log", ".hydra/config.yaml", "checkpoints/final.pt", "checkpoints/best.pt"):
        assert (trained.run_dir / name).exists(), name
    logits = trained.model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and not trained.model.training
    assert "Done: 2 epochs" in (trained.run_dir / "train.log").read_text()  # as the command's own log says it


def test_load_gives_the_weights_asked_for_ready_to_predict(trained, tmp_path):
    best, final = lenet_exp.load(trained.run_dir, "best"), lenet_exp.load(trained.run_dir, which="final")
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(final(images), trained.model(images))
    state = torch.load(trained.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.equal(best.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(FileNotFoundError, match="best.pt: no such checkpoint; it has not finished an epoch"):
        lenet_exp.load(tmp_path)  # a folder with no weights in it
    with pytest.raises(ValueError, match="which='last'"):
        lenet_exp.load(trained.run_dir, "last")


def test_train_takes_a_runs_saved_config_and_logs_to_the_console(trained, tmp_path, capsys):
    """The saved config as a file's path, or loaded as a dict; with no logging set up, the console gets the lines."""
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []  # a plain python session: no logging set up
    try:
        again = lenet_exp.train(trained.run_dir / ".hydra" / "config.yaml", tmp_path / "again")
    finally:
        root.handlers = handlers
    assert again.history == trained.history  # the same settings, the same figures, digit for digit
    assert "epoch 2/2" in capsys.readouterr().err
    import yaml

    saved = yaml.safe_load((trained.run_dir / ".hydra" / "config.yaml").read_text())
    same = lenet_exp.train(saved, trained.run_dir, quiet=True)  # a finished run asked for again: not retrained
    assert same.metrics == trained.metrics


def test_hydras_own_compose_finds_the_configs_as_lenet_exp_conf():
    code = (
        "from hydra import compose, initialize_config_module\n"
        "with initialize_config_module('lenet_exp.conf', version_base='1.3'):\n"
        "    print(compose('config').optimizer.lr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "0.9", proc.stderr


def test_evaluate_gives_the_recorded_figures_per_class_and_the_confusion(trained):
    proc = run_cli(str(trained.run_dir), module="lenet_exp.evaluate", cwd=trained.run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    m = trained.metrics
    assert f"test acc {m['test_acc']:.4f} on 256 examples (metrics.json: {m['test_acc']:.4f})" in proc.stdout
    assert f"val acc {m['val_acc']:.4f} on 256 examples (metrics.json: {m['val_acc']:.4f})" in proc.stdout
    assert "| T-shirt/top |" in proc.stdout and "| Ankle boot |" in proc.stdout
    assert "Most confused (true as predicted, of 256): " in proc.stdout
    figures = json.loads((trained.run_dir / "evaluation.json").read_text())
    assert sum(map(sum, figures["confusion"])) == 256 and (trained.run_dir / "confusion.png").stat().st_size > 10_000
    best = run_cli(str(trained.run_dir), "--which", "best", module="lenet_exp.evaluate", cwd=trained.run_dir.parent)
    epoch = m["best_epoch"]
    assert f"(metrics.json: {m['history']['val_acc'][epoch - 1]:.4f})" in best.stdout, best.stderr


def test_evaluate_refuses_what_is_no_finished_run_in_one_line(trained, tmp_path):
    cases = {
        str(tmp_path): "not a run folder (no .hydra/config.yaml)",
        str(tmp_path / "none"): "no such folder",
        f"{trained.run_dir} --which last": "argument --which: invalid choice: 'last'",
    }
    unfinished = tmp_path / "unfinished"
    (unfinished / ".hydra").mkdir(parents=True)
    (unfinished / ".hydra" / "config.yaml").write_text((trained.run_dir / ".hydra" / "config.yaml").read_text())
    (unfinished / "metrics.json").write_text(json.dumps({"status": "interrupted", "epochs_completed": 1}))
    cases[str(unfinished)] = "no checkpoints/final.pt: it has not completed (status interrupted); continue it with: "
    diverged = shutil.copytree(unfinished, tmp_path / "diverged")
    (diverged / "metrics.json").write_text(json.dumps({"status": "diverged", "epochs_completed": 1}))
    cases[f"{diverged} --which final"] = "it has not completed (status diverged); train it again"  # no resume= hint
    gone = shutil.copytree(unfinished, tmp_path / "gone")
    (gone / "metrics.json").write_text(json.dumps({"status": "completed", "epochs_completed": 1}))
    cases[str(gone)] = "no checkpoints/final.pt: its weights are gone, though it completed; train it again"
    damaged = shutil.copytree(trained.run_dir, tmp_path / "damaged")
    final = damaged / "checkpoints" / "final.pt"
    final.write_bytes(final.read_bytes()[:1000])  # a copy cut short
    cases[str(damaged)] = f"Error: {final}: damaged, or not this run's weights ("
    for args, said in cases.items():
        proc = run_cli(*args.split(), module="lenet_exp.evaluate", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr
    assert not (unfinished / "confusion.png").exists()


def test_summarize_compares_a_folder_of_single_runs(tmp_path, fashion_mnist):
    for lr, more in (("0.3", []), ("0.9", []), ("0.1", ["activation=relu"])):
        folder = f"hydra.run.dir=outputs/day/{lr}"
        proc = run_cli(*TINY, "trainer.epochs=1", f"optimizer.lr={lr}", *more, folder, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    record = tmp_path / "outputs" / "day" / "0.1" / "metrics.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "interrupted"}))  # stopped, say
    proc = run_cli("outputs", module="lenet_exp.summarize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "outputs" / "summary.md").read_text()
    assert md.startswith("# Runs compared: outputs") and "3 runs: 2 completed, 1 interrupted" in md
    # the runs, by their folders and what differs: a key a run left at its default shows the value it ran with
    assert (
        "| day/0.3 | 0.3 | sigmoid |" in md and "| day/0.9 | 0.9 | sigmoid |" in md and "| day/0.1 | 0.1 | relu |" in md
    )
    resume = f"python -m lenet_exp resume={tmp_path / 'outputs' / 'day' / '0.1'}"
    assert f"Not finished; continue each with:\n\n    {resume}\n" in md and "--multirun" not in md


def test_evaluate_gives_the_recorded_figures_of_a_bf16_run(tmp_path, fashion_mnist):
    """A run that evaluated in bf16 (`device.amp` on a device that computes in it) is evaluated in bf16 again: the
    figures are those metrics.json recorded, not fp32's, which differ in an image or two."""
    sizes = ["data.limit_train=4000", "data.limit_test=2000", "data.val_size=2000", "data.batch_size=64"]
    knobs = ["model.norm=batch", "device.amp=true", "optimizer=adam", "activation=relu", "trainer.epochs=1"]
    cfg = lenet_exp.compose([*SMALL, *sizes, *knobs])
    run = lenet_exp.train(cfg, tmp_path / "bf16", quiet=True)
    proc = run_cli(str(run.run_dir), module="lenet_exp.evaluate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for split in ("val", "test"):
        figure = run.metrics[f"{split}_acc"]
        assert f"{split} acc {figure:.4f} on 2000 examples (metrics.json: {figure:.4f})" in proc.stdout, proc.stdout
