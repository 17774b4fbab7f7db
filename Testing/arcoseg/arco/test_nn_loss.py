"""Nearest-neighbour (diversity) loss."""

import torch
import torch.nn.functional as F

from arcoseg.arco.memory_bank import RingBuffer
from arcoseg.arco.nn_loss import QUEUE_SIZE, image_embeddings, nearest_neighbour_loss


def test_nn_loss_has_a_gradient_into_the_student_only():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(4, 8, 6, 6, generator=g, requires_grad=True)
    queue = torch.randn(36, 8, generator=g, requires_grad=True)
    loss = nearest_neighbour_loss(image_embeddings(student), queue.detach())
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert queue.grad is None


def test_nn_loss_is_lower_near_the_queue_entries():
    queue = torch.eye(8)[:6]
    near = queue[:3] + 0.05 * torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    far = -queue[:3]
    assert nearest_neighbour_loss(near, queue) < nearest_neighbour_loss(far, queue)


def test_nn_loss_uses_the_top_k_nearest_entries():
    queue = torch.eye(4)
    student = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(nearest_neighbour_loss(student, queue, topk=1)) == 0.0
    assert abs(float(nearest_neighbour_loss(student, queue, topk=2)) - 0.5) < 1e-6


def test_nn_loss_is_zero_with_a_gradient_path_while_the_queue_is_empty():
    student = torch.ones(2, 8, requires_grad=True)
    loss = nearest_neighbour_loss(student, torch.zeros(0, 8))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_image_embeddings_are_unit_length_global_averages():
    maps = torch.randn(3, 5, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    pooled = image_embeddings(maps)
    assert torch.allclose(pooled, F.normalize(maps.mean((2, 3, 4)), dim=1))


def test_queue_holds_the_last_36_image_embeddings():
    queue = RingBuffer(QUEUE_SIZE)
    for step in range(12):
        queue.push(torch.full((4, 2), float(step)))
    assert len(queue) == 36 and float(queue.get()[0, 0]) == 3.0
