"""Every option of every config group composes and builds; bad values are refused with the key named."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lenet_exp.build import build, resolve_device
from lenet_exp.config import CONFIG_PATH, ConfigError, Settings

GROUPS = ["model", "activation", "optimizer", "data", "device", "trainer"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted(Path(CONFIG_PATH, g).glob("*.yaml"))]


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)
    assert {"sigmoid", "relu", "tanh"} <= {o for g, o in OPTIONS if g == "activation"}
    assert {"sgd", "adam"} <= {o for g, o in OPTIONS if g == "optimizer"}
    assert {"fashion_mnist", "mnist"} <= {o for g, o in OPTIONS if g == "data"}
    assert {"auto", "cpu", "cuda"} <= {o for g, o in OPTIONS if g == "device"}


@pytest.mark.parametrize("group,option", OPTIONS)
def test_option_composes_and_builds(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    settings = Settings.from_cfg(cfg)
    if group == "device" and option == "cuda" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda"):
            resolve_device(settings.device.name)
        return
    model, optimizer = build(cfg, settings, torch.device("cpu"))
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    logits.sum().backward()
    optimizer.step()
    if group == "activation":
        assert type(instantiate(cfg.activation)) in {type(m) for m in model}


def test_textbook_defaults(make_cfg):
    cfg = make_cfg(small=False)
    assert cfg.optimizer.lr == 0.9 and cfg.optimizer.momentum == 0 and cfg.optimizer.weight_decay == 0
    assert cfg.data.batch_size == 256 and cfg.trainer.epochs == 10 and cfg.trainer.log_points == 5
    assert cfg.data.name == "fashion_mnist" and cfg.device.name == "auto" and cfg.seed == 0
    model, optimizer = build(cfg, Settings.from_cfg(cfg), torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in model) == 4


def test_lr_override_reaches_the_optimizer(make_cfg):
    for opt, lr in (("sgd", 0.3), ("adam", 0.01)):
        cfg = make_cfg(f"optimizer={opt}", f"optimizer.lr={lr}")
        _, optimizer = build(cfg, Settings.from_cfg(cfg), torch.device("cpu"))
        assert optimizer.param_groups[0]["lr"] == lr


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer.lr=abc", "optimizer.lr='abc'"),
        ("optimizer.lr=0", "optimizer.lr=0 "),
        ("optimizer.momentum=1.5", "optimizer.momentum=1.5"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.batch_size=2.5", "data.batch_size=2.5"),
        ("trainer.epochs=0", "trainer.epochs=0"),
        ("trainer.log_points=0", "trainer.log_points=0"),
        ("data.limit_train=0", "data.limit_train=0"),
        ("data.limit_test=-5", "data.limit_test=-5"),
        ("data.download=maybe", "data.download='maybe'"),
        ("seed=-1", "seed=-1"),
        ("device.name=tpu", "device.name='tpu'"),
        ("device.threads=0", "device.threads=0 is not allowed: expected null \\(torch's default\\)"),
        ("+data.shuffle=false", "data.shuffle: unknown key"),
    ],
)
def test_bad_values_name_key_and_allowed(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace(".", r"\.")):
        Settings.from_cfg(make_cfg(override))


@pytest.mark.parametrize(
    "override,message",
    [("+optimizer.learning_rate=0.1", "optimizer: .*learning_rate"), ("model.pool=min", "model: pool='min'")],
)
def test_bad_target_keys_fail_before_training(make_cfg, override, message):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=message):
        build(cfg, Settings.from_cfg(cfg), torch.device("cpu"))


def test_a_plugin_hidden_by_the_editable_install_gets_the_fix():
    from lenet_exp.config import _plugin_hint

    error = Exception(
        "In 'hparams_search/halving': Could not find 'hydra/sweeper/halving' Available options in 'hydra/sweeper': basic"
    )
    assert _plugin_hint(error) == (
        "hydra/sweeper=halving: Hydra cannot find lenet_exp's halving plugin; reinstall with "
        "pip install -e . --config-settings editable_mode=compat (or a plain pip install .)"
    )
