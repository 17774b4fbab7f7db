"""SemiSupervisedMethod: one iteration of mean teacher / ARCO with a tiny stand-in network."""

import math

import pytest
import torch
from safetensors.torch import load, save
from torch import nn

from arcoseg.arco.cutmix import MixPlan, mixing_plan
from arcoseg.arco.config import ArcoConfig
from arcoseg.arco.step import SemiSupervisedMethod, unsupervised_loss
from arcoseg.arco.teacher import batch_statistics
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import ArcosegError

K = 3


class StandIn(nn.Module):
    """The network interface: forward -> logits; forward_train -> (logits, stride-2 embeddings)."""

    def __init__(self, dims: int, head: bool = True, pointwise: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        size = 1 if pointwise else 3
        self.body = nn.Sequential(conv(1, 8, size, padding=size // 2),
                                  nn.Identity() if pointwise else norm(8), nn.ReLU())
        self.classifier = conv(8, K, 1)
        self.pool = (nn.AvgPool2d if dims == 2 else nn.AvgPool3d)(2)
        self.head = conv(8, 6, 1) if head else None

    def forward(self, x):
        return self.classifier(self.body(x))

    def forward_train(self, x):
        features = self.body(x)
        embeddings = self.head(self.pool(features)) if self.head is not None else None
        return self.classifier(features), embeddings


def synthetic(batch: int, spatial: tuple[int, ...], generator: torch.Generator):
    """Easy task: class = intensity level of a few boxes, plus noise."""
    labels = torch.zeros((batch, *spatial), dtype=torch.long)
    for b in range(batch):
        for c in (1, 2):
            start = [int(torch.randint(0, s // 2, (1,), generator=generator)) for s in spatial]
            box = tuple(slice(st, st + s // 2) for st, s in zip(start, spatial))
            labels[(b, *box)] = c
    images = labels[:, None].float() + 0.3 * torch.randn((batch, 1, *spatial), generator=generator)
    return images, labels


def build(dims: int, seed: int = 0, **config):
    torch.manual_seed(seed)
    model = StandIn(dims)
    method = SemiSupervisedMethod(model, ArcoConfig(**config), K, dims, "cpu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, method, optimizer


def step(model, method, optimizer, batch, iteration, total=20):
    labelled, unlabelled = batch
    loss, terms = method.training_step(model, labelled, unlabelled, iteration, total)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.after_optimizer_step(model)
    return terms


def batches(dims: int, count: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    spatial = (16, 16) if dims == 2 else (8, 8, 8)
    return [(synthetic(2, spatial, g), (synthetic(2, spatial, g)[0], None)) for _ in range(count)]


CONFIGS = {"mean_teacher": dict(method="mean_teacher"),
           "mean_teacher-no-cutmix": dict(method="mean_teacher", mix="none"),
           "arco-ns": dict(method="arco", sampler="ns"),
           "arco-sg": dict(method="arco", sampler="sg"),
           "arco-sg-bidirectional": dict(method="arco", sampler="sg", mix="bidirectional"),
           "arco-sag-no-jitter": dict(method="arco", sampler="sag", jitter=0.0)}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_few_steps_run_and_report_every_term(dims, config):
    model, method, optimizer = build(dims, **config, anchors=32, negatives=16)
    model.train()
    for it, batch in enumerate(batches(dims, 2)):
        terms = step(model, method, optimizer, batch, it)
    for key in ("loss", "loss_sup", "loss_unsup", "loss_contrast", "loss_nn"):
        assert torch.isfinite(terms[key]), key
    if config["method"] == "arco":
        assert terms["valid_classes"] >= 2 and terms["time_contrast"] > 0
        assert sum(terms[f"anchors/{c}"] for c in range(K)) > 0
        assert float(terms["loss_contrast"]) > 0 and float(terms["loss_nn"]) > 0
    else:
        assert float(terms["loss_contrast"]) == 0.0 and "valid_classes" not in terms


def test_training_reduces_the_loss_on_an_easy_task():
    model, method, optimizer = build(2, method="arco", sampler="sg", anchors=64, negatives=32)
    model.train()
    losses = [step(model, method, optimizer, batch, it) for it, batch in
              enumerate(batches(2, 20))]
    first = sum(float(t["loss"]) for t in losses[:3])
    last = sum(float(t["loss"]) for t in losses[-3:])
    assert last < 0.7 * first
    assert float(losses[-1]["loss_sup"]) < 0.5 * float(losses[0]["loss_sup"])


def train(seed: int, count: int = 3, **config):
    model, method, optimizer = build(2, seed, **config, anchors=32, negatives=16)
    model.train()
    for it, batch in enumerate(batches(2, count)):
        step(model, method, optimizer, batch, it)
    return model, method


def test_same_seed_gives_the_same_weights_and_another_seed_does_not():
    first, _ = train(0, sampler="sag")
    second, _ = train(0, sampler="sag")
    other, _ = train(1, sampler="sag")
    for a, b, c in zip(first.parameters(), second.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters()))


def test_state_dict_round_trip_resumes_exactly():
    data = batches(2, 5)
    model, method, optimizer = build(2, method="arco", sampler="sg", anchors=32, negatives=16)
    model.train()
    for it in range(3):
        step(model, method, optimizer, data[it], it)
    saved = save(method.state_dict())  # flat tensors: safetensors as is
    weights, moments = save(model.state_dict()), optimizer.state_dict()
    moments = {"state": {k: {n: t.clone() for n, t in v.items()} for k, v in
                         moments["state"].items()}, "param_groups": moments["param_groups"]}
    for it in (3, 4):
        step(model, method, optimizer, data[it], it)

    resumed, method2, optimizer2 = build(2, seed=5, method="arco", sampler="sg", anchors=32,
                                         negatives=16)
    resumed.load_state_dict(load(weights))
    optimizer2.load_state_dict(moments)
    method2.load_state_dict(load(saved))
    resumed.train()
    for it in (3, 4):
        step(resumed, method2, optimizer2, data[it], it)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    for key, value in method.state_dict().items():
        assert torch.equal(value, method2.state_dict()[key]), key


def test_unannotated_labelled_voxels_contribute_zero_gradient():
    torch.manual_seed(0)
    model = StandIn(2, head=False, pointwise=True)  # no spatial mixing: gradient stays per pixel
    method = SemiSupervisedMethod(model, ArcoConfig(method="mean_teacher"), K, 2, "cpu")
    g = torch.Generator().manual_seed(0)
    images, labels = synthetic(2, (8, 8), g)
    labels[:, :4] = IGNORE_LABEL  # top half never drawn
    images.requires_grad_(True)
    loss, _ = method.training_step(model, (images, labels), (synthetic(2, (8, 8), g)[0], None),
                                   0, 10)
    loss.backward()
    grad = images.grad.abs()[:, 0]
    assert float(grad[:, :4].sum()) == 0.0
    assert bool((grad[:, 4:] > 0).all())


def test_annotations_on_unlabelled_images_replace_pseudo_labels():
    model, method, _ = build(2, method="mean_teacher", conf_threshold=0.0)
    (labelled, (images, labels)) = batches(2, 1)[0][0], synthetic(2, (16, 16),
                                                                  torch.Generator())
    _, with_labels = method.training_step(model, labelled, (images, labels), 0, 10)
    _, without = method.training_step(model, labelled, (images, None), 0, 10)
    assert float(with_labels["loss_unsup"]) == 0.0  # every voxel annotated: nothing pseudo
    assert float(without["loss_unsup"]) > 0.0
    assert float(with_labels["loss_sup"]) != float(without["loss_sup"])


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_jitter_changes_only_the_students_view_of_unlabelled_images(jitter):
    _, method, _ = build(2, method="mean_teacher", mix="none", jitter=jitter)
    (x_l, y_l), (x_u, _) = batches(2, 1)[0]
    _, x_all, _ = method._student_inputs(x_l, y_l, x_u, None)
    assert torch.equal(x_all[:2], x_l)
    assert torch.equal(x_all[2:], x_u) is (jitter == 0.0)


def test_unsupervised_loss_weights_each_image_by_its_confident_fraction():
    logits = torch.zeros(2, 2, 1, 4)
    pseudo = torch.zeros(2, 1, 4, dtype=torch.long)
    confidence = torch.tensor([[[1.0, 1.0, 0.5, 0.5]], [[1.0, 1.0, 1.0, 1.0]]])
    valid = torch.ones(2, 1, 4, dtype=torch.bool)
    ce = torch.log(torch.tensor(2.0))
    expected = ce * (0.5 * 4 + 1.0 * 4) / 8
    assert torch.allclose(unsupervised_loss(logits, pseudo, confidence, valid), expected)
    valid[1] = False  # only the first image counts
    assert torch.allclose(unsupervised_loss(logits, pseudo, confidence, valid), ce * 0.5)


def test_teacher_follows_the_student_and_is_the_model_to_ship():
    model, method, optimizer = build(2, method="mean_teacher")
    before = [p.clone() for p in method.teacher.parameters()]
    step(model, method, optimizer, batches(2, 1)[0], 0)
    assert method.eval_model() is method.teacher and not method.teacher.training
    assert any(not torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))


def test_arco_without_a_representation_head_is_refused():
    torch.manual_seed(0)
    model = StandIn(2, head=False)
    method = SemiSupervisedMethod(model, ArcoConfig(method="arco"), K, 2, "cpu")
    with pytest.raises(ArcosegError, match="representation head"):
        method.training_step(model, *batches(2, 1)[0], 0, 10)


def test_supervised_warm_up_then_the_teacher_starts_as_a_copy_of_the_student():
    model, method, optimizer = build(2, method="arco", warmup_iters=2, rampup_iters=4,
                                     anchors=32, negatives=16)
    model.train()
    data = batches(2, 3)
    for it in (0, 1):
        terms = step(model, method, optimizer, data[it], it)
        assert set(terms) == {"loss", "loss_sup", "rampup"} and terms["rampup"] == 0.0
        for a, b in zip(method.teacher.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b)
    terms = step(model, method, optimizer, data[2], 2)
    assert terms["rampup"] == pytest.approx(math.exp(-5))  # the ramp-up starts after warm-up
    assert float(terms["loss_contrast"]) > 0
    assert any(not torch.equal(a, b) for a, b in zip(method.teacher.parameters(),
                                                     model.parameters()))  # EMA again


def test_a_warm_up_fraction_follows_the_schedule_and_once_over_stays_over():
    model, method, optimizer = build(2, method="mean_teacher", warmup_fraction=0.5,
                                     rampup_iters=None)
    model.train()
    data = batches(2, 1)[0]
    assert not method.uses_unlabelled(4, 10)
    terms = step(model, method, optimizer, (data[0], None), 4, total=10)  # none sampled
    assert set(terms) == {"loss", "loss_sup", "rampup"}
    assert method.uses_unlabelled(5, 10)
    terms = step(model, method, optimizer, data, 5, total=10)  # half of 10: warm-up over
    assert "loss_unsup" in terms and terms["rampup"] == pytest.approx(math.exp(-5))
    terms = step(model, method, optimizer, data, 6, total=40)  # a budget lengthens the schedule
    assert "loss_unsup" in terms  # no second warm-up (it would reset the teacher)
    assert terms["rampup"] == pytest.approx(math.exp(-5 * (1 - 1 / 7) ** 2))  # (40 - 5) / 5


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_a_warm_up_fraction_outside_0_to_1_is_refused(fraction):
    with pytest.raises(ArcosegError, match="Warm-up fraction"):
        ArcoConfig(warmup_fraction=fraction)


def test_default_ramp_up_is_a_fifth_of_the_schedule_left_after_warm_up():
    model, method, optimizer = build(2, method="mean_teacher", warmup_iters=10, rampup_iters=None)
    model.train()
    terms = step(model, method, optimizer, batches(2, 1)[0], 20, total=110)
    assert terms["rampup"] == pytest.approx(math.exp(-5 * 0.5 ** 2))  # 10 of (110 - 10) / 5
    terms = step(model, method, optimizer, batches(2, 1)[0], 20, total=60)  # budget shortened
    assert terms["rampup"] == 1.0


@pytest.mark.parametrize("norm", ["batch", "running"])
def test_the_pseudo_labelling_pass_keeps_the_teachers_running_statistics(norm):
    model, method, optimizer = build(2, method="mean_teacher", teacher_norm=norm)
    model.train()
    captured = {}
    original = method._teacher_pass

    def spy(*args):
        captured["bn_training"] = method.teacher.body[1].training
        captured["running"] = method.teacher.body[1].running_mean.clone()
        view = original(*args)
        captured["after"] = method.teacher.body[1].running_mean.clone()
        return view

    method._teacher_pass = spy
    step(model, method, optimizer, batches(2, 1)[0], 0)
    assert captured["bn_training"] is (norm == "batch")
    assert torch.equal(captured["running"], captured["after"])
    assert not method.teacher.body[1].training


@pytest.mark.parametrize("method, images", [("arco", 4), ("mean_teacher", 2)])
def test_the_teacher_forwards_each_image_of_the_pool_once(method, images):
    """ARCO: labelled + raw unlabelled (2 + 2), not also the student's 4 mixed inputs; mean
    teacher: the raw unlabelled images only."""
    model, method_, optimizer = build(2, method=method, anchors=32, negatives=16)
    model.train()
    seen = []
    method_.teacher.body.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    step(model, method_, optimizer, batches(2, 1)[0], 0)
    assert seen == [images]


@pytest.mark.parametrize("mix", ["unlabelled", "bidirectional"])
def test_the_teachers_view_of_the_mixed_inputs_is_its_pool_output_mixed_by_the_plan(mix):
    _, method, _ = build(2, method="arco", mix=mix)
    (x_l, _), (x_u, _) = batches(2, 1)[0]
    plan = mixing_plan(2, 2, (16, 16), mix, torch.Generator().manual_seed(3))
    with torch.no_grad(), batch_statistics(method.teacher):
        view = method._teacher_pass(x_l, x_u, plan)
        logits, z = method.teacher.forward_train(torch.cat([x_l, x_u]))
    probs = torch.softmax(logits, dim=1)
    pooled = torch.nn.functional.avg_pool2d(probs, 2)
    pick = plan.box[:, ::2, ::2]  # the embeddings' grid (stride 2): nearest full-res pixel
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    for k in range(4):
        source = torch.where(pick[k], plan.partner[k], plan.base[k])  # (8, 8) pool index
        assert torch.equal(view.embeddings[k], z[source, :, rows, cols].movedim(-1, 0))
        assert torch.equal(view.probabilities[k], pooled[source, :, rows, cols].movedim(-1, 0))
    assert torch.equal(view.pseudo, plan.apply(probs.argmax(1)))
    assert torch.equal(view.confidence, plan.apply(probs.max(1).values))
    unlabelled = (torch.arange(4) >= 2).view(4, 1, 1).expand(4, 16, 16)
    assert torch.equal(view.has_pseudo, plan.apply(unlabelled))
    assert torch.equal(view.raw_embeddings, z[2:])


def test_with_no_receptive_field_across_box_edges_the_view_equals_a_true_forward():
    """A pointwise network and boxes on the embedding grid: mixing the pool's outputs is then
    exactly the teacher's forward of the mixed images (the approximation is only at edges)."""
    torch.manual_seed(0)
    model = StandIn(2, pointwise=True)
    method = SemiSupervisedMethod(model, ArcoConfig(method="arco", teacher_norm="running"), K,
                                  2, "cpu")
    (x_l, _), (x_u, _) = batches(2, 1)[0]
    box = torch.zeros(4, 16, 16, dtype=torch.bool)
    box[2:, 4:12, 2:10] = True
    plan = MixPlan(torch.arange(4), torch.tensor([0, 1, 3, 2]), box)
    with torch.no_grad():
        view = method._teacher_pass(x_l, x_u, plan)
        logits, z = method.teacher.forward_train(plan.apply(torch.cat([x_l, x_u])))
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(view.embeddings, z, atol=1e-6)
    assert torch.allclose(view.probabilities, torch.nn.functional.avg_pool2d(probs, 2),
                          atol=1e-6)
    assert torch.equal(view.pseudo, probs.argmax(1))


@pytest.mark.parametrize("bad", [dict(method="supervised"), dict(sampler="grid"),
                                 dict(ema=1.0), dict(anchors=0), dict(tau=0.0),
                                 dict(mix="labelled"), dict(teacher_norm="instance"),
                                 dict(jitter=1.0), dict(jitter=-0.1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ArcosegError):
        ArcoConfig(**bad)
