"""A validation split: held out of the training examples, the same for every run, and the only figure that chooses
(best.pt, a halving search, Optuna's objective, the summary's Best) wherever it exists."""

import pytest
import torch
from helpers import make_job, run_cli, scalars

from lenet_exp.config import compose_config
from lenet_exp.data import VAL_SEED, Split
from lenet_exp.jobs import job_outcome
from lenet_exp.metrics import figure_at as score
from lenet_exp.schema import check_config
from lenet_exp.summary import write_summary
from lenet_exp.training import load_data_for, train

SLICE = ["device=cpu", "data.download=false", "data.limit_train=2048", "data.limit_test=512", "trainer.progress=false"]


def test_the_split_is_disjoint_from_training_and_the_same_for_every_seed(fashion_mnist):
    numbered = Split(torch.zeros(1000, 28, 28, dtype=torch.uint8), torch.arange(1000))
    rest, held = numbered.hold_out(100, VAL_SEED)
    assert len(held) == 100 and len(rest) == 900
    assert not set(held.labels.tolist()) & set(rest.labels.tolist())  # no example in both
    assert rest.labels.tolist() == sorted(rest.labels.tolist())  # the rest keeps its order: limit_train heads it
    for seed in (0, 1):  # the run's seed does not move the split; real data: held-out images not among training ones
        s = compose_config([*SLICE, "data.val_size=500", f"seed={seed}"])
        train_set, val_set, _ = load_data_for(check_config(s), torch.device("cpu"))
        assert len(val_set) == 500 and len(train_set) == 2048
        assert torch.equal(val_set.images, load_data_for(check_config(s), torch.device("cpu"))[1].images)
        if seed == 0:
            first = val_set.images
        assert torch.equal(val_set.images, first)
    whole = Split(*load_data_for(check_config(compose_config(SLICE[:2])), torch.device("cpu"))[0].__dict__.values())
    assert len(whole) == 60000


def test_a_run_with_a_split_chooses_its_best_epoch_on_validation(tmp_path, fashion_mnist, caplog):
    cfg = compose_config([*SLICE, "data.val_size=1000", "trainer.epochs=3", "optimizer.lr=0.9"])
    with caplog.at_level("INFO", logger="lenet_exp.train"):
        m = train(cfg, tmp_path / "run")
    assert "1000 held out for validation" in caplog.text and "1000 val" in caplog.text and "val acc" in caplog.text
    vals = m["history"]["val_acc"]
    assert m["chosen_on"] == "val_acc" and len(vals) == 3 and m["val_acc"] == vals[-1]
    assert m["best_epoch"] == vals.index(max(vals)) + 1 and m["best_val_acc"] == max(vals)
    curves = scalars(tmp_path / "run")
    assert [v for _, v in curves["val/acc"]] == pytest.approx(vals)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    model = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert (m["best_epoch"] == 3) == all(torch.equal(best[k], model[k]) for k in model)  # best.pt: the val-best epoch


def test_without_a_split_the_test_set_chooses_and_the_summary_says_it_is_optimistic(tmp_path):
    base = {"status": "completed", "epochs_completed": 1, "history": {"test_acc": [0.8]}, "best_test_acc": 0.8}
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], {**base, "test_acc": 0.8})
    make_job(tmp_path, "1_optimizer.lr=0.9", ["optimizer.lr=0.9"], {**base, "test_acc": 0.7})
    write_summary(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "Best: job 0, test acc 0.8000" in text and "optimistic" in text and "val_acc" not in text


def test_with_a_split_validation_chooses_and_test_is_reported_beside(tmp_path):
    """Job 1 has the better test figure but the worse validation one: job 0 is the best, everywhere."""
    figures = {0: (0.85, 0.70), 1: (0.80, 0.90)}  # job: (val, test)
    for job, (val, test) in figures.items():
        history = {"test_acc": [test], "val_acc": [val]}
        metrics = {"status": "completed", "epochs_completed": 1, "test_acc": test, "best_test_acc": test,
                   "val_acc": val, "best_val_acc": val, "chosen_on": "val_acc", "best_epoch": 1,
                   "history": history}  # fmt: skip
        make_job(tmp_path, f"{job}_optimizer.lr=0.{job + 1}", [f"optimizer.lr=0.{job + 1}"], metrics)
        assert score(metrics, 1) == val and job_outcome(metrics, None, None) == val  # halving and Optuna choose on val
    write_summary(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "Best: job 0, val acc 0.8500 (test acc 0.7000)" in text and "optimistic" not in text
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert rows[0].split(",")[3:5] == ["val_acc", "best_val_acc"] and rows[1].startswith("0,")


def test_a_search_preset_holds_out_5000_and_a_split_too_large_is_refused(tmp_path, fashion_mnist):
    assert compose_config(["hparams_search=halving"]).data.val_size == 5000
    assert compose_config([]).data.val_size == 0  # the textbook run trains on all 60,000
    proc = run_cli(*SLICE, "data.val_size=60000", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.val_size=60000 is not allowed: expected fewer than the 60000 training examples" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
