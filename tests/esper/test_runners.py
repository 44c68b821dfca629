"""Epoch runners and validation: empty loaders, perplexity clamp, per-class accuracy."""

import math

import pytest
import torch

from esper.tolaria.runners import perplexity, train_epoch, validate

from esper_testkit import tiny_data, tiny_model

CPU = torch.device("cpu")


class FixedModel(torch.nn.Module):
    """Predicts class = x[:, 0] (a lookup), for exact accuracy checks."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0].long(), 3).float() * 10 + self.dummy


def test_empty_loaders_raise_value_error():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="empty training loader"):
        train_epoch(model, [], opt, {}, CPU)
    with pytest.raises(ValueError, match="empty validation loader"):
        validate(model, [], CPU, 3)


def test_per_class_accuracy_is_exact():
    # predictions: [0, 1, 2, 0, 1, 1]; labels: [0, 1, 2, 1, 1, 2]
    x = torch.tensor([[0.], [1.], [2.], [0.], [1.], [1.]])
    y = torch.tensor([0, 1, 2, 1, 1, 2])
    res = validate(FixedModel(), [(x[:4], y[:4]), (x[4:], y[4:])], CPU, 3)
    assert res.val_acc == pytest.approx(400 / 6)
    assert res.per_class_acc == pytest.approx([100.0, 200 / 3, 50.0])
    assert res.perplexity is None


def test_perplexity_is_clamped():
    assert perplexity(1.0) == pytest.approx(math.e)
    assert perplexity(50.0) == pytest.approx(math.exp(20.0))
    assert math.isnan(perplexity(float("nan")))


def test_train_epoch_learns_and_reports_one_row_per_stride():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    from esper.tolaria.runners import StepHooks
    loader = tiny_data(n=192)
    first = train_epoch(model, loader, opt, {}, CPU, StepHooks(batch_stride=2))
    for _ in range(5):
        last = train_epoch(model, loader, opt, {}, CPU)
    assert first.steps == 6 and first.samples == 192 and len(first.strided) == 3
    assert all(math.isfinite(r[1]) for r in first.strided)
    assert last.loss < first.loss


class Untouchable:
    def __iter__(self):
        raise AssertionError("the trainer's own loader was used")


def test_trainer_epoch_trains_on_batches_passed_in():
    from esper.leyline.config import TrainConfig
    from esper.tolaria.trainer import Trainer
    model = tiny_model()
    trainer = Trainer(model, Untouchable(), tiny_data(seed=1), num_classes=3, cfg=TrainConfig(epochs=1))
    batches = list(tiny_data(seed=2))
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    trainer.run_epoch(1, batches=batches)
    assert trainer.step == len(batches) == len(seen)
    assert all(torch.equal(x, b[0]) for x, b in zip(seen, batches))
