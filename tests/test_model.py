"""The default model is the textbook LeNet: its layers, their output shapes and its init."""

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from lenet_exp.model import LeNet, shape_table

TEXTBOOK_SHAPES = [
    "Conv2d output shape:\ttorch.Size([1, 6, 28, 28])",
    "Sigmoid output shape:\ttorch.Size([1, 6, 28, 28])",
    "AvgPool2d output shape:\ttorch.Size([1, 6, 14, 14])",
    "Conv2d output shape:\ttorch.Size([1, 16, 10, 10])",
    "Sigmoid output shape:\ttorch.Size([1, 16, 10, 10])",
    "AvgPool2d output shape:\ttorch.Size([1, 16, 5, 5])",
    "Flatten output shape:\ttorch.Size([1, 400])",
    "Linear output shape:\ttorch.Size([1, 120])",
    "Sigmoid output shape:\ttorch.Size([1, 120])",
    "Linear output shape:\ttorch.Size([1, 84])",
    "Sigmoid output shape:\ttorch.Size([1, 84])",
    "Linear output shape:\ttorch.Size([1, 10])",
]


def default_model(make_cfg) -> LeNet:
    cfg = make_cfg()
    return instantiate(cfg.model, activation=instantiate(cfg.activation, _partial_=True))


def test_default_shape_table_is_the_textbooks(make_cfg):
    model = default_model(make_cfg)
    assert shape_table(model, model.input_shape) == TEXTBOOK_SHAPES


def test_default_model_layers_and_parameter_count(make_cfg):
    model = default_model(make_cfg)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 6, (5, 5), (2, 2)),
        (6, 16, (5, 5), (0, 0)),
    ]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == [
        (400, 120),
        (120, 84),
        (84, 10),
    ]
    assert sum(p.numel() for p in model.parameters()) == 61706  # the textbook LeNet-5's parameter count


def test_xavier_uniform_init_bounds_weights():
    torch.manual_seed(0)
    model = LeNet(nn.Sigmoid, init="xavier_uniform")
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel() if m.weight.dim() == 4 else m.weight.shape[0]
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert m.weight.abs().max() <= bound
            assert m.weight.abs().max() > 0.8 * bound  # drawn from the whole range, not torch's narrower default


@pytest.mark.parametrize("pool,cls", [("avg", nn.AvgPool2d), ("max", nn.MaxPool2d)])
def test_pool_option_picks_the_layer(pool, cls):
    assert sum(isinstance(m, cls) for m in LeNet(nn.ReLU, pool=pool)) == 2


def test_bad_architecture_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="pool='min'"):
        LeNet(nn.ReLU, pool="min")
    with pytest.raises(ValueError, match="shrinks to nothing"):
        LeNet(nn.ReLU, conv_channels=(6, 16, 32, 64))


def test_classifier_computes_in_fp32_under_bf16_autocast():
    """Near-ties must not collapse in bf16: accuracy under autocast is counted from fp32 logits."""
    torch.manual_seed(0)
    model, x = LeNet(nn.Sigmoid), torch.rand(8, 1, 28, 28)
    with torch.autocast("cpu", torch.bfloat16):
        logits = model(x)
        features = x
        for layer in list(model)[:-1]:
            features = layer(features)
    assert logits.dtype == torch.float32
    expected = torch.nn.functional.linear(features.float(), model[-1].weight, model[-1].bias)
    assert torch.equal(logits, expected)


def test_the_next_chapters_layers_sit_where_the_textbook_puts_them():
    """Batch norm between each conv or hidden linear layer and its activation; dropout before each hidden linear
    layer; the classifier untouched. With max pooling and a never-decreasing activation, the pool comes first."""
    model = LeNet(nn.Sigmoid, norm="batch", dropout=0.25)
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Conv2d", "BatchNorm2d", "Sigmoid", "AvgPool2d", "Conv2d", "BatchNorm2d", "Sigmoid", "AvgPool2d", "Flatten",
        "Dropout", "Linear", "BatchNorm1d", "Sigmoid", "Dropout", "Linear", "BatchNorm1d", "Sigmoid", "Linear",
    ]  # fmt: skip
    assert {m.p for m in model if isinstance(m, nn.Dropout)} == {0.25}
    assert len(shape_table(model, (1, 28, 28))) == len(kinds) and model.training  # one example: eval mode, restored
    plain = [type(m).__name__ for m in LeNet(nn.Sigmoid)]
    assert "Dropout" not in plain and "BatchNorm1d" not in plain and len(plain) == 12


@pytest.mark.parametrize(
    "activation,first",
    [(nn.Tanh, "MaxPool2d"), (nn.ReLU, "MaxPool2d"), (nn.Sigmoid, "MaxPool2d"), (nn.GELU, "GELU")],
)
def test_max_pooling_comes_first_only_where_the_function_is_the_same(activation, first):
    """Pool before a never-decreasing activation: the same outputs and gradients as the textbook's order, faster.
    GELU dips below zero, so the largest input is not the largest output: it keeps the textbook's order."""
    torch.manual_seed(0)
    model = LeNet(activation, conv_channels=(8, 16), pool="max")
    assert type(model[1]).__name__ == first
    textbook = nn.Sequential(*(model[i] for i in (0, 2, 1, 3, 5, 4, *range(6, len(model)))))
    x = torch.randn(16, 1, 28, 28)
    reordered = first == "MaxPool2d"
    if reordered:
        assert torch.allclose(model(x), textbook(x), atol=1e-6)
        g1 = torch.autograd.grad(model(x).sum(), model[0].weight)[0]
        g2 = torch.autograd.grad(textbook(x).sum(), model[0].weight)[0]
        assert torch.allclose(g1, g2, atol=1e-5)
    assert type(LeNet(activation, pool="avg")[1]).__name__ == activation.__name__  # averaging: the textbook's order


def test_bad_norm_and_dropout_are_refused_with_the_reason(make_cfg):
    with pytest.raises(ValueError, match="norm='layer'"):
        LeNet(nn.ReLU, norm="layer")
    with pytest.raises(ValueError, match=r"dropout=1\.0"):
        LeNet(nn.ReLU, dropout=1.0)
