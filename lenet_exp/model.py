"""LeNet-5 as in the textbook, built from plain arguments, and its layer-by-layer shape table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
INITS = ("xavier_uniform", "kaiming_uniform", "default")
AUTOCAST_DEVICES = ("cpu", "cuda")  # where the classifier steps out of autocast


class LeNet(nn.Sequential):
    """Conv-act-pool twice, flatten, then linear-act layers and a linear classifier.

    With the defaults this is the textbook network: Conv 1->6 k5 p2, AvgPool 2, Conv 6->16 k5,
    AvgPool 2, Flatten, Linear 400->120->84->10, with the given activation after every hidden layer.
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
    ) -> None:
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}: allowed values are {', '.join(POOLS)}")
        if init not in INITS:
            raise ValueError(f"init={init!r}: allowed values are {', '.join(INITS)}")
        size = image_size
        for i in range(len(conv_channels)):  # each conv + 2x2 pool; only the first conv pads, as in the textbook
            size = (size + 2 * (padding if i == 0 else 0) - kernel_size + 1) // 2
            if size < 1:
                raise ValueError(
                    f"a {image_size}x{image_size} input shrinks to nothing after conv {i + 1}; "
                    "use fewer conv_channels, a smaller kernel_size or more padding"
                )
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out_channels in enumerate(conv_channels):
            pad = padding if i == 0 else 0  # only the first conv pads, as in the textbook
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size, padding=pad),
                activation(),
                POOLS[pool](kernel_size=2, stride=2),
            ]
            channels = out_channels
        layers.append(nn.Flatten())
        width = channels * size * size  # the last feature map's side (the image's, without convs)
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
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


def mixed_precision(amp: bool, x: torch.Tensor) -> torch.autocast:
    """bf16 autocast where `device.amp` asks for it and the data is on CUDA; a no-op elsewhere."""
    return torch.autocast("cuda", torch.bfloat16, enabled=amp and x.is_cuda)


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
    """Each layer's output shape for one example, in the textbook's words."""
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    lines = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            lines.append(f"{layer.__class__.__name__} output shape:\t{x.shape}")
    return lines
