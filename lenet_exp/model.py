"""LeNet-5 as in the textbook, built from plain arguments, and its layer-by-layer shape table."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
NORMS = ("none", "batch")
INITS = ("xavier_uniform", "kaiming_uniform", "default")
AUTOCAST_DEVICES = ("cpu", "cuda")  # where the classifier steps out of autocast


class LeNet(nn.Sequential):
    """Conv-act-pool twice, flatten, then linear-act layers and a linear classifier.

    With the defaults this is the textbook network: Conv 1->6 k5 p2, AvgPool 2, Conv 6->16 k5,
    AvgPool 2, Flatten, Linear 400->120->84->10, with the given activation after every hidden layer.
    With max pooling and an activation that never decreases (tanh, ReLU, sigmoid, ...), the pool comes before the
    activation: the same function (the largest of four activations is the activation of the largest input), with the
    activation computed on a quarter of the numbers (a bf16 step of [32, 64] channels on a CPU 1.4x as fast).
    The next chapter's additions: `norm="batch"` puts batch normalisation between each conv or hidden linear
    layer and its activation (the layer then has no bias: the norm's own shift replaces it, which would otherwise
    take Adam's steps on a zero gradient); `dropout` > 0 drops that fraction of the inputs of each hidden linear layer.
    """

    def __init__(
        self,
        activation: Callable[[], nn.Module],
        in_channels: int = 1,
        image_size: int = 28,
        conv_channels: Sequence[int] = (6, 16),
        kernel_size: int = 5,
        padding: int = 2,
        pool: str = "avg",
        hidden: Sequence[int] = (120, 84),
        num_classes: int = 10,
        init: str = "xavier_uniform",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        size = _check_arguments(image_size, conv_channels, kernel_size, padding, pool, init, norm, dropout)
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out_channels in enumerate(conv_channels):
            pad = padding if i == 0 else 0  # only the first conv pads, as in the textbook
            act, pooling = activation(), POOLS[pool](kernel_size=2, stride=2)
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size, padding=pad, bias=norm == "none"),
                *([nn.BatchNorm2d(out_channels)] if norm == "batch" else []),
                *((pooling, act) if pool == "max" and never_decreasing(act) else (act, pooling)),
            ]
            channels = out_channels
        layers.append(nn.Flatten())
        width = channels * size * size  # the last feature map's side (the image's, without convs)
        for h in hidden:
            layers += [
                *([nn.Dropout(dropout)] if dropout else []),
                nn.Linear(width, h, bias=norm == "none"),
                *([nn.BatchNorm1d(h)] if norm == "batch" else []),
                activation(),
            ]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.input_shape = (in_channels, image_size, image_size)
        if init != "default":
            self.apply(lambda m: _init_weights(m, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers in order; the classifier always in fp32, so bf16 autocast counts accuracy as fp32 does."""
        *body, classifier = self
        for layer in body:  # (B, 1, 28, 28) -> conv (B, 6, 28, 28) -> pool (B, 6, 14, 14) -> conv (B, 16, 10, 10)
            x = layer(x)  # -> pool (B, 16, 5, 5) -> flatten (B, 400) -> (B, 120) -> (B, 84)
        with full_precision(x):
            return classifier(x.float())  # logits (B, 10), fp32 even under autocast


def _check_arguments(image_size, conv_channels, kernel_size, padding, pool, init, norm, dropout) -> int:
    """ValueError naming the first argument LeNet cannot take; else the side of the last feature map."""
    for name, value, allowed in (("pool", pool, POOLS), ("init", init, INITS), ("norm", norm, NORMS)):
        if value not in allowed:
            raise ValueError(f"{name}={value!r}: allowed values are {', '.join(allowed)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r}: expected a fraction in [0, 1)")
    size = image_size
    for i in range(len(conv_channels)):  # each conv + 2x2 pool; only the first conv pads, as in the textbook
        size = (size + 2 * (padding if i == 0 else 0) - kernel_size + 1) // 2
        if size < 1:
            raise ValueError(
                f"a {image_size}x{image_size} input shrinks to nothing after conv {i + 1}; "
                "use fewer conv_channels, a smaller kernel_size or more padding"
            )
    return size


MONOTONE = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid)  # never decreasing; LeakyReLU below


def never_decreasing(activation: nn.Module) -> bool:
    """Whether the activation never decreases (a larger input never gives a smaller output), so max pooling may
    come first. Anything else (GELU, SiLU, an unknown class) keeps the textbook's order."""
    if type(activation) is nn.LeakyReLU:
        return activation.negative_slope >= 0
    return type(activation) in MONOTONE


def mixed_precision(amp: bool, x: torch.Tensor) -> torch.autocast:
    """bf16 autocast where `device.amp` asks for it and the device computes in bf16 natively: CUDA, or a CPU with
    bf16 instructions (AMX or AVX512-BF16: 1.4x to 2.2x the fp32 speed of LeNet [32,64]); a no-op elsewhere."""
    kind = x.device.type
    return torch.autocast(
        kind if kind in AUTOCAST_DEVICES else "cpu", torch.bfloat16, enabled=amp and native_bf16(kind)
    )


@functools.cache
def native_bf16(kind: str) -> bool:
    """Whether a device of this type computes in bf16 at full speed (a CPU without bf16 instructions emulates it)."""
    if kind == "cuda":
        return True
    return kind == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def full_precision(x: torch.Tensor):
    """Autocast switched off where it can be on: the classifier's logits are fp32 (LeNet's and the fused model's)."""
    return torch.autocast(x.device.type, enabled=False) if x.device.type in AUTOCAST_DEVICES else nullcontext()


def _init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise conv and linear weights with the named scheme; biases keep torch's default."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if scheme == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")


def shape_table(model: nn.Sequential, input_shape: Sequence[int]) -> list[str]:
    """Each layer's output shape for one example, in the textbook's words (in eval mode: batch norm takes one)."""
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    lines, training = [], model.training
    model.eval()
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            lines.append(f"{layer.__class__.__name__} output shape:\t{x.shape}")
    model.train(training)
    return lines
