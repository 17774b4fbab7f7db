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

Efficiency: only sampled pixels are gathered from the (B, D, *s) embedding maps (advanced
indexing, no (B*N, D) copy), and only a pool of negatives (not anchors x negatives vectors);
nothing is computed at full resolution. The only host synchronisation is one transfer of the
per-class candidate counts (it decides the sample sizes and skips absent classes); on CUDA it is
started asynchronously by `select_pixels`, so calling that before the student forward hides it.
Everything runs in float32 with autocast off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arcoseg.arco.memory_bank import ClassMemoryBank
from arcoseg.arco.samplers import GridLayout, draw, ranks, sample_bank

POOL_FACTOR = 8  # negatives of all anchors of a class come from a pool of 8 x `negatives` draws


@dataclass
class PixelSelection:
    """Teacher-side choices of one batch at the embedding resolution (see module docstring)."""

    shape: tuple[int, ...]  # (B, *spatial) of the embedding maps
    anchor_mask: torch.Tensor  # (K, B*N) bool
    negative_mask: torch.Tensor  # (K, B*N) bool
    prototypes: torch.Tensor  # (K, D) unit length (zero for classes without reliable pixels)
    counts: torch.Tensor  # (3, K): anchor candidates, negative candidates, reliable pixels
    ready: torch.cuda.Event | None = None  # set while `counts` is still being copied to the host

    def host_counts(self) -> list[list[int]]:
        """`counts` as Python ints (waits for the asynchronous copy; the one host sync)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.counts.tolist()


def _to_host_async(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    if tensor.device.type != "cuda":
        return tensor, None
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


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
        counts, ready = _to_host_async(torch.stack([anchors.sum(1), negatives.sum(1), sizes]))
    return PixelSelection(tuple(labels.shape), anchors, negatives, prototypes, counts, ready)


def _gather(embeddings: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Rows (k, D) of the pixels `flat` (indices into B*N) of embeddings (B, D, *s)."""
    maps = embeddings.flatten(2)
    pixels = maps.shape[2]
    return maps[torch.div(flat, pixels, rounding_mode="floor"), :, flat % pixels]


def info_nce(queries: torch.Tensor, positive: torch.Tensor, negative_similarity: torch.Tensor,
             tau: float) -> torch.Tensor:
    """InfoNCE, target = the positive: unit queries (k, D), unit positive (D,), cosine similarity
    of each query to its own negatives (k, n)."""
    logits = torch.cat([(queries @ positive)[:, None], negative_similarity], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(queries), dtype=torch.long,
                                               device=queries.device))


def negative_similarity(queries: torch.Tensor, stored: torch.Tensor, tags: torch.Tensor,
                        cells: int, negatives: int, stratified: bool,
                        generator: torch.Generator | None) -> torch.Tensor:
    """Cosine similarity (k, negatives) of each unit query to its own bank draws.

    The draws of all queries are taken from one pool of POOL_FACTOR x `negatives` bank entries
    drawn the same way (stratified by cell, or uniform). A pool entry is a uniform draw from its
    cell, so each query's negatives are still, marginally, per-cell uniform bank draws in
    proportion to the cells; only the pool is gathered, not k x negatives vectors.
    """
    pool = sample_bank(tags, cells, POOL_FACTOR * negatives, 1, stratified, generator)[0]
    rows = sample_bank(tags[pool], cells, negatives, len(queries), stratified, generator)
    return (queries @ stored[pool].T).gather(1, rows)


def _push_negatives(z_t: torch.Tensor, selection: PixelSelection, counts: list[int],
                    bank: ClassMemoryBank, sampler: str, layout: GridLayout, push: int,
                    generator: torch.Generator | None) -> None:
    """Push up to `push` sampled negative candidates of each class (unit teacher embeddings,
    tagged with their grid cell) into that class's bank."""
    for c, available in enumerate(counts):
        if available:
            picked = draw(sampler, selection.negative_mask[c].view(selection.shape),
                          min(push, available), layout.grid, generator,
                          spatial_dims=len(layout.shape))
            bank.push(c, F.normalize(_gather(z_t, picked).float(), dim=1), layout.cell_of(picked))


def contrastive_loss(z_s: torch.Tensor, z_t: torch.Tensor, selection: PixelSelection,
                     bank: ClassMemoryBank, sampler: str = "sg",
                     generator: torch.Generator | None = None, *, grid: int = 4,
                     anchors: int = 256, negatives: int = 512, tau: float = 0.5,
                     push: int = 1024) -> tuple[torch.Tensor, dict[str, torch.Tensor | int]]:
    """The contrastive loss of one batch; also feeds the memory bank.

    z_s / z_t: student / teacher embeddings (B, D, *s). Returns the loss and diagnostics:
    `anchors` (K,) anchors drawn per class, `valid_classes` (classes that entered the mean).
    """
    with torch.autocast(z_s.device.type, enabled=False):
        n_anchors, n_negatives, n_members = selection.host_counts()
        shape, dims = selection.shape, len(selection.shape) - 1
        layout = GridLayout.of(shape, grid, dims)
        _push_negatives(z_t, selection, n_negatives, bank, sampler, layout, push, generator)
        present = sum(n > 0 for n in n_members) >= 2
        valid = [c for c, n in enumerate(n_anchors) if present and n and bank.count(c)]
        sizes = [min(anchors, n_anchors[c]) for c in valid]
        drawn = torch.zeros(len(n_anchors), dtype=torch.long)
        drawn[valid] = torch.tensor(sizes, dtype=torch.long)
        diagnostics = {"anchors": drawn, "valid_classes": len(valid)}
        if not valid:
            return z_s.float().sum() * 0.0, diagnostics
        picked = [draw(sampler, selection.anchor_mask[c].view(shape), k, grid, generator,
                       spatial_dims=dims) for c, k in zip(valid, sizes)]
        # One gather for all classes, so the backward pass scatters into the map only once.
        queries = F.normalize(_gather(z_s, torch.cat(picked)).float(), dim=1)
        losses = []
        for c, rows in zip(valid, queries.split(sizes)):
            similarity = negative_similarity(rows, bank.get(c), bank.get_tags(c),
                                             layout.cells_per_image, negatives, sampler != "ns",
                                             generator)
            losses.append(info_nce(rows, selection.prototypes[c], similarity, tau))
        return torch.stack(losses).mean(), diagnostics
