"""The nearest-neighbour ("diversity") loss: pull each unlabelled image's student embedding
towards its nearest teacher image embeddings in a FIFO queue (spec section 2, `L_nn`).

Unlike the reference code, the distances are taken from the *student* embedding, so the loss
has a gradient into the student; the queue (teacher, detached) is the fixed target. The queue
itself is a `memory_bank.RingBuffer` of QUEUE_SIZE entries (state_dict for resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUEUE_SIZE = 36
TOP_K = 5


def image_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """Unit-length image-level embeddings (B, D): global average pool of (B, D, *spatial)."""
    return F.normalize(embeddings.float().flatten(2).mean(2), dim=1)


def nearest_neighbour_loss(student: torch.Tensor, queue: torch.Tensor,
                           topk: int = TOP_K) -> torch.Tensor:
    """Mean (1 - cosine) between each student image embedding (B, D) and its `topk` nearest
    queue entries (n, D), nearest by cosine; 0 (with a gradient path) while the queue is empty.
    """
    student = F.normalize(student.float(), dim=1)
    if queue.shape[0] == 0:
        return student.sum() * 0.0
    similarity = student @ F.normalize(queue.float(), dim=1).T
    nearest = similarity.topk(min(topk, queue.shape[0]), dim=1).values
    return (1.0 - nearest).mean()

