"""Splitting a draw of N images over the ranks of a distributed run, and putting it back together.

Rank r draws a contiguous run of whole batches (the batches of the one-rank draw, cut into
``world`` nearly equal runs), so each batch holds the same images as in a one-rank draw and, with
per-image noise (``generate.image_generators``), every image comes out bit for bit the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def rank_batches(num: int, batch_size: int, world: int) -> list[range]:
    """For each rank, the batch numbers it draws: ``ceil(num / batch_size)`` batches in ``world`` runs."""
    if num < 0 or batch_size < 1 or world < 1:
        raise ValueError(f"need num ≥ 0, batch_size ≥ 1 and world ≥ 1, got {num}, {batch_size}, {world}")
    batches = -(-num // batch_size)
    cuts = [r * batches // world for r in range(world + 1)]
    return [range(cuts[r], cuts[r + 1]) for r in range(world)]


def rank_indices(num: int, batch_size: int, rank: int, world: int) -> list[int]:
    """The image indices rank ``rank`` of ``world`` draws, ascending."""
    run = rank_batches(num, batch_size, world)[rank]
    return list(range(run.start * batch_size, min(run.stop * batch_size, num)))


def gather_in_order(
    local: torch.Tensor, num: int, batch_size: int, world: int, all_gather: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Every rank's ``local`` images (its ``rank_indices``, in order) as one (num, ...) tensor in
    index order, on every rank. ``all_gather(t)`` stacks each rank's equally shaped ``t`` into
    (world, ...); the shares are padded to the largest for it."""
    if world == 1:
        return local
    counts = [len(rank_indices(num, batch_size, r, world)) for r in range(world)]
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = all_gather(padded)  # (world, max count, ...)
    return torch.cat([gathered[r, :c].to(local.device) for r, c in enumerate(counts)])
