"""Every option of every config group composes and builds; bad keys and values are refused with the key named."""

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lenet_exp.build import build, resolve_device
from lenet_exp.config import CONFIG_PATH, compose_config
from lenet_exp.errors import ConfigError
from lenet_exp.schema import Settings, check_config

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
        "In 'hparams_search/halving': Could not find 'hydra/sweeper/halving' "
        "Available options in 'hydra/sweeper': basic"
    )
    assert _plugin_hint(error) == (
        "hydra/sweeper=halving: Hydra cannot find lenet_exp's halving plugin; reinstall with "
        "pip install -e . --config-settings editable_mode=compat (or a plain pip install .)"
    )


UNKNOWN_KEYS = [  # (override, the one line's start): each group refuses a key its schema does not declare
    ("model.kernel=3", "model.kernel: no such key. (python -m lenet_exp --cfg job lists every key)"),
    ("+model.kernel=3", "model.kernel: unknown key; allowed keys: in_channels, image_size, conv_channels, kernel_size"),
    ("optimizer.learning_rate=0.1", "optimizer.learning_rate: no such key. Did you mean optimizer.lr?"),
    ("optimizer=adam optimizer.eps=1e-6", "optimizer.eps: no such key"),
    ("activation.negative_slop=0.1", "activation.negative_slop: no such key"),
    ("+data.batchsize=8", "data.batchsize: unknown key; allowed keys: name, root, download, batch_size, val_size"),
    ("data.batchsize=8", "data.batchsize: no such key. Did you mean data.batch_size?"),
    ("+trainer.epoch=3", "trainer.epoch: unknown key; allowed keys: epochs, log_points, progress. Did you mean"),
    ("trainer.epoch=3", "trainer.epoch: no such key. Did you mean trainer.epochs?"),
    ("+device.thread=2", "device.thread: unknown key; allowed keys: name, channels_last, amp, compile, threads"),
    ("device.thread=2", "device.thread: no such key. Did you mean device.threads?"),
    ("sed=1", "sed: no such key. Did you mean seed?"),
    ("+sed=1", "sed: unknown key; allowed keys: model, activation, optimizer, scheduler, data, device, trainer, seed"),
]


@pytest.mark.parametrize("overrides,message", UNKNOWN_KEYS)
def test_an_unknown_key_in_any_group_is_refused_when_composed(make_cfg, overrides, message):
    with pytest.raises(ConfigError) as refused:
        make_cfg(*overrides.split())
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_groups_that_pass_keys_on_take_new_keys_for_their_class(make_cfg):
    cfg = make_cfg(
        "+optimizer.nesterov=true", "optimizer.momentum=0.9", "activation=leaky_relu", "+activation.inplace=true"
    )
    _, optimizer = build(cfg, check_config(cfg), torch.device("cpu"))
    assert optimizer.param_groups[0]["nesterov"] is True


BAD_TYPES = [  # a value OmegaConf cannot convert to its key's type: refused when composed, in the words of the rule
    ("model.kernel_size=abc", "model.kernel_size='abc' is not allowed: expected an integer >= 1"),
    ("model.hidden=[120,x]", "model.hidden[1]='x' is not allowed: expected a list of integers >= 1"),
    ("optimizer.momentum=abc", "optimizer.momentum='abc' is not allowed: expected a number in [0, 1)"),
    ("data.limit_test=abc", "data.limit_test='abc' is not allowed: expected null (all examples) or an integer >= 1"),
    ("trainer.epochs=true", "trainer.epochs=True is not allowed: expected an integer >= 1"),
    ("device.amp=maybe", "device.amp='maybe' is not allowed: expected true or false"),
    ("seed=1.5", "seed=1.5 is not allowed: expected an integer in [0, 2**32)"),
    ("deterministic=maybe", "deterministic='maybe' is not allowed: expected true or false"),
]


@pytest.mark.parametrize("override,message", BAD_TYPES)
def test_a_value_of_the_wrong_type_is_refused_when_composed(make_cfg, override, message):
    with pytest.raises(ConfigError) as refused:
        make_cfg(override)
    assert str(refused.value) == message


BAD_RANGES = [  # a value of the right type outside its key's range: refused by the rule, before anything runs
    ("model.padding=-1", "model.padding=-1 is not allowed: expected an integer >= 0"),
    ("model.pool=min", "model.pool='min' is not allowed: expected one of avg, max"),
    ("optimizer.weight_decay=-0.5", "optimizer.weight_decay=-0.5 is not allowed: expected a finite number >= 0"),
    ("optimizer.lr=0", "optimizer.lr=0 is not allowed: expected a finite number > 0"),
    ("data.name=cifar", "data.name='cifar' is not allowed: expected one of fashion_mnist, mnist"),
    ("data.root=''", "data.root='' is not allowed: expected a non-empty string"),
    ("trainer.progress=sometimes", "trainer.progress='sometimes' is not allowed: expected one of auto, true, false"),
    ("device.name=tpu", "device.name='tpu' is not allowed: expected one of auto, cpu, cuda, mps"),
    ("seed=-1", "seed=-1 is not allowed: expected an integer in [0, 2**32)"),
]


@pytest.mark.parametrize("override,message", BAD_RANGES)
def test_a_value_out_of_range_is_refused_in_every_section(make_cfg, override, message):
    cfg = make_cfg(override)  # the type is right: composing takes it
    with pytest.raises(ConfigError) as refused:
        check_config(cfg)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "overrides,message",
    [
        ("hparams_search=halving hydra.sweeper.eta=1", "hydra.sweeper.eta=1 is not allowed: expected an integer >= 2"),
        (
            "hparams_search=halving hydra.sweeper.eta=x",
            "hydra.sweeper.eta='x' is not allowed: expected an integer >= 2",
        ),
        ("hydra/launcher=fused hydra.launcher.max_models=0", "hydra.launcher.max_models=0 is not allowed"),
        ("hparams_search=optuna hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 is not allowed"),
        ("hydra/launcher=parallel hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0 is not allowed"),
    ],
)
def test_plugin_settings_are_held_to_their_rules(overrides, message):
    from lenet_exp.sweep_checks import check_plugin_settings

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_plugin_settings(compose_config(overrides.split(), with_hydra=True))


def test_a_saved_config_reads_back_to_the_same_settings(make_cfg):
    """A run folder's .hydra/config.yaml (plain YAML, as earlier versions wrote it) reads back to its settings."""
    cfg = make_cfg("optimizer=adam", "optimizer.lr=1", "data=mnist", "trainer.progress=false")
    saved = OmegaConf.create(OmegaConf.to_yaml(cfg))
    assert asdict(Settings.from_cfg(saved)) == asdict(Settings.from_cfg(cfg))
    assert type(cfg.data.name) is str and cfg.optimizer.lr == 1.0  # plain values in the job config: no Enum
