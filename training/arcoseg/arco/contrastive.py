"""The ARCO pixel contrastive loss (spec section 4), in two phases.

`select_pixels` (teacher only, no gradient) marks, per class c, at the embedding resolution:
- reliable pixels: every annotated pixel, plus the unannotated pixels whose *teacher* entropy is
  among the lowest alpha_t = 20 (1 - t/T) % of the unannotated pixels of the batch (the teacher's
  entropy, so the selection is ready before the student forward; see below);
- anchor candidates: reliable pixels labelled c whose teacher probability of c is > 0.3;
- negative candidates: pixels *not* labelled c (annotated or not) that the teacher finds
  confusable with c: c is among its two most probable classes and p(c) < 0.97;
- the positive: the class prototype, the mean teacher embedding over the reliable pixels of c.

`contrastive_loss` then, per class: pushes a sample of `push` negative candidates (teacher
embeddings, unit length, tagged with their grid cell) into the class's FIFO memory bank, draws
`anchors` student embeddings with the sampler, draws `negatives` bank entries per anchor (from
a shared pool of bank draws, see `negative_similarity`), and takes InfoNCE on cosine similarity
(temperature tau, target = the prototype). The loss is the mean over the classes that have
anchors and negatives, and 0 (with a gradient path) when fewer than two classes are present.

How the samplers reach the memory bank (which has no spatial layout): image-space sampling
happens where the layout exists. NS/SG/SAG choose the anchors and the negatives pushed into the
bank (so a SAG push contains antithetic pairs); each bank entry keeps its grid-cell id, and draws
from the bank are stratified by cell for SG and SAG (each cell gets its share of the 512 draws,
largest remainder), uniform for NS.

Efficiency: all classes are sampled, gathered and scored at once with fixed shapes: a class with
fewer than `anchors` candidates (or none, or an empty bank) gets padding draws whose weight is
0, so the step never reads a count on the host and never waits for the GPU. Only sampled pixels
are gathered from the (B, D, *s) embedding maps (advanced indexing, no (B*N, D) copy), and only
a pool of negatives (not anchors x negatives vectors); nothing is computed at full resolution.
Everything runs in float32 with autocast off. Under DDP the pushed negatives of every rank are
gathered (`share`) so that all ranks hold the same banks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from arcoseg.arco.memory_bank import ClassMemoryBank
from arcoseg.arco.samplers import GridLayout, draw_rows, ranks, sample_bank, sample_pool

POOL_FACTOR = 8  # negatives of all anchors of a class come from a pool of 8 x `negatives` draws
Share = Callable[[torch.Tensor], torch.Tensor]  # rows of all ranks, concatenated along dim 1


@dataclass
class PixelSelection:
    """Teacher-side choices of one batch at the embedding resolution (see module docstring)."""

    shape: tuple[int, ...]  # (B, *spatial) of the embedding maps
    anchor_mask: torch.Tensor  # (K, B*N) bool
    negative_mask: torch.Tensor  # (K, B*N) bool
    prototypes: torch.Tensor  # (K, D) unit length (zero for classes without reliable pixels)
    counts: torch.Tensor  # (3, K) on the device: anchor candidates, negatives, reliable pixels


def _reliable(probs: torch.Tensor, annotated: torch.Tensor, percent: float) -> torch.Tensor:
    """Annotated pixels plus the `percent` % lowest-entropy unannotated ones (B*N,)."""
    entropy = -(probs * probs.clamp(min=1e-8).log()).sum(0)
    free = ~annotated
    keep = torch.floor(free.sum() * (percent / 100.0))
    rank = ranks(torch.argsort(torch.where(free, entropy, torch.inf)))
    return annotated | (free & (rank < keep))


@torch.no_grad()
def select_pixels(z_t: torch.Tensor, p_t: torch.Tensor, labels: torch.Tensor,
                  annotated: torch.Tensor, progress: float, conf_threshold: float = 0.97,
                  anchor_threshold: float = 0.3, reliable_percent: float = 20.0) -> PixelSelection:
    """Anchor/negative candidates and prototypes of a batch.

    z_t: teacher embeddings (B, D, *s); p_t: teacher probabilities (B, K, *s); labels (B, *s):
    ground truth where `annotated` (B, *s) else pseudo-labels; progress = t / T in [0, 1].
    """
    with torch.autocast(z_t.device.type, enabled=False):
        num_classes = p_t.shape[1]
        probs = p_t.float().movedim(1, 0).reshape(num_classes, -1)
        flat_labels = labels.reshape(-1).long()
        reliable = _reliable(probs, annotated.reshape(-1),
                             reliable_percent * (1.0 - min(max(progress, 0.0), 1.0)))
        is_class = flat_labels[None] == torch.arange(num_classes, device=labels.device)[:, None]
        members = is_class & reliable
        anchors = members & (probs > anchor_threshold)
        runner_up = probs.topk(min(2, num_classes), dim=0).values[-1]
        negatives = ~is_class & (probs >= runner_up) & (probs < conf_threshold)
        batch = z_t.shape[0]
        member_maps = members.view(num_classes, batch, -1).float()
        sums = torch.einsum("kbn,bdn->kd", member_maps, z_t.float().flatten(2))
        sizes = members.sum(1)
        prototypes = F.normalize(sums / sizes.clamp(min=1)[:, None], dim=1)
        counts = torch.stack([anchors.sum(1), negatives.sum(1), sizes])
    return PixelSelection(tuple(labels.shape), anchors, negatives, prototypes, counts)


def _gather(embeddings: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Rows (k, D) of the pixels `flat` (indices into B*N) of embeddings (B, D, *s)."""
    maps = embeddings.flatten(2)
    pixels = maps.shape[2]
    return maps[torch.div(flat, pixels, rounding_mode="floor"), :, flat % pixels]


def info_nce(queries: torch.Tensor, positives: torch.Tensor, negative_similarity: torch.Tensor,
             tau: float) -> torch.Tensor:
    """InfoNCE per query, target = its row's positive: unit queries (R, k, D), unit positives
    (R, D), cosine similarity of each query to its own negatives (R, k, n); returns (R, k)."""
    positive = (queries * positives[:, None]).sum(-1, keepdim=True)
    logits = torch.cat([positive, negative_similarity], dim=-1) / tau
    return torch.logsumexp(logits, dim=-1) - logits[..., 0]


def negative_similarity(queries: torch.Tensor, stored: torch.Tensor, tags: torch.Tensor,
                        sizes: torch.Tensor, cells: int, negatives: int, stratified: bool,
                        generator: torch.Generator | None) -> torch.Tensor:
    """Cosine similarity (R, k, negatives) of each unit query (R, k, D) to its own draws from
    its row's bank: stored (R, C, D) and tags (R, C) by slot, sizes (R,) filled slots.

    The draws of all queries of a row are taken from one pool of POOL_FACTOR x `negatives` bank
    entries drawn the same way (stratified by cell, or uniform). A pool entry is a uniform draw
    from its cell, so each query's negatives are still, marginally, per-cell uniform bank draws
    in proportion to the cells; only the pool is gathered, not k x negatives vectors.
    """
    pool = sample_bank(tags, sizes, cells, POOL_FACTOR * negatives, stratified, generator)
    pooled = stored.gather(1, pool.slots[..., None].expand(-1, -1, stored.shape[2]))
    positions = sample_pool(pool.alloc, negatives, queries.shape[1], generator)
    return torch.bmm(queries, pooled.transpose(1, 2)).gather(2, positions)


def _push_negatives(z_t: torch.Tensor, selection: PixelSelection, bank: ClassMemoryBank,
                    sampler: str, layout: GridLayout, push: int,
                    generator: torch.Generator | None, share: Share | None) -> None:
    """Push up to `push` sampled negative candidates of each class (unit teacher embeddings,
    tagged with their grid cell) into that class's bank; with `share`, those of every rank."""
    classes = selection.negative_mask.shape[0]
    picked, valid = draw_rows(sampler, selection.negative_mask.view(classes, *selection.shape),
                              push, layout.grid, generator, spatial_dims=len(layout.shape))
    feats = F.normalize(_gather(z_t, picked.view(-1)).float(), dim=1).view(classes, push, -1)
    tags = layout.cell_of(picked)
    if share is not None:
        feats, tags, valid = share(feats), share(tags), share(valid)
    bank.push_rows(feats, tags, valid)


def contrastive_loss(z_s: torch.Tensor, z_t: torch.Tensor, selection: PixelSelection,
                     bank: ClassMemoryBank, sampler: str = "sg",
                     generator: torch.Generator | None = None, *, grid: int = 4,
                     anchors: int = 256, negatives: int = 512, tau: float = 0.5,
                     push: int = 1024, share: Share | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The contrastive loss of one batch; also feeds the memory bank.

    z_s / z_t: student / teacher embeddings (B, D, *s). Returns the loss and diagnostics (device
    tensors): `anchors` (K,) anchors drawn per class (0 for a class left out), `valid_classes`
    (classes that entered the mean). No host synchronisation.
    """
    with torch.autocast(z_s.device.type, enabled=False):
        shape, dims = selection.shape, len(selection.shape) - 1
        layout = GridLayout.of(shape, grid, dims)
        _push_negatives(z_t, selection, bank, sampler, layout, push, generator, share)
        classes = selection.anchor_mask.shape[0]
        picked, drawn = draw_rows(sampler, selection.anchor_mask.view(classes, *shape), anchors,
                                  grid, generator, spatial_dims=dims)
        n_anchors, _, n_members = selection.counts
        present = (n_members > 0).sum() >= 2
        valid = present & (n_anchors > 0) & (bank.sizes > 0)
        weight = (drawn & valid[:, None]).float()
        # One gather for all classes, so the backward pass scatters into the map only once.
        queries = F.normalize(_gather(z_s, picked.view(-1)).float(), dim=1)
        queries = queries.view(classes, anchors, -1)
        stored, tags = bank.storage()
        similarity = negative_similarity(queries, stored, tags, bank.sizes,
                                         layout.cells_per_image, negatives, sampler != "ns",
                                         generator)
        loss = info_nce(queries, selection.prototypes, similarity, tau)
        per_class = (loss * weight).sum(1) / weight.sum(1).clamp(min=1)
        total = (per_class * valid).sum() / valid.sum().clamp(min=1)
        return total, {"anchors": weight.sum(1).long(), "valid_classes": valid.sum()}
