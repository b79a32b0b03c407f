"""Training-time augmentation on the data's own device, with no loader: each training image is flipped left-right
at random and cropped back to its size at a random place in a zero-padded copy (`data.augment`).

What each image gets is drawn once an epoch, for each place in the epoch's order, by a generator seeded with the run's
seed and the epoch, as the shuffle is: so a run resumed at any step draws what it would have drawn unbroken, on any
device, and a fused model draws each of its models' own.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

PAD = 2  # zero pixels added on each side before the crop: shifts of up to 2 pixels each way
SALT = 0x5EED_A06  # keeps the augmentation's draws apart from the shuffle's, which seeds by the same (seed, epoch)


def epoch_draws(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """(n, 3) uint8 for the n places of one epoch's order: flip (0 or 1), then the crop's top and left offsets
    (0 to 2 * PAD, PAD keeps the image where it was); drawn on the CPU, the same on every device."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) ^ SALT)
    flips = torch.randint(0, 2, (n, 1), generator=generator)
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    return torch.cat([flips, offsets], dim=1).to(torch.uint8).to(device)


def epoch_augmentation(
    augment: bool, seeds: list[int], n: int, epoch: int, device: torch.device
) -> torch.Tensor | None:
    """Each model's draws for the epoch's n places (G, N, 3), from its own seed; None without augmentation (a fused
    group's models share `data.augment`)."""
    return torch.stack([epoch_draws(n, seed, epoch, device) for seed in seeds]) if augment else None


def augmented(images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """uint8 images (G, B, H, W) with their draws (G, B, 3) -> the flipped, shifted images (G, B, H, W), uint8.
    One gather per batch: each output pixel reads the padded image at its crop's row and (flipped) column."""
    G, B, H, W = images.shape
    padded = F.pad(images.reshape(G * B, H, W), (PAD, PAD, PAD, PAD))  # (GB, H + 2 PAD, W + 2 PAD), zeros around
    d = draws.reshape(G * B, 3).long()
    rows = d[:, 1:2] + torch.arange(H, device=images.device)  # (GB, H)
    cols = d[:, 2:3] + torch.arange(W, device=images.device)  # (GB, W)
    cols = torch.where(d[:, 0:1].bool(), cols.flip(1), cols)  # read right to left: a mirror image
    which = torch.arange(G * B, device=images.device)[:, None, None]
    return padded[which, rows[:, :, None], cols[:, None, :]].view(G, B, H, W)
