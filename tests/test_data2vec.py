"""data2vec: EMA schedule and update, teacher targets, loss, training on a fixed batch."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from speechssl.data.dataset import AudioBatch
from speechssl.ssl import get_method
from speechssl.ssl.data2vec import (
    Data2VecConfig,
    Data2VecPretraining,
    data2vec_config,
    ema_decay_at,
    instance_norm_time,
)

SMALL = dict(
    conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    hidden_size=32,
    num_layers=3,
    num_heads=2,
    ffn_dim=64,
    pos_conv_kernel=5,
    pos_conv_depth=2,
    pos_conv_groups=2,
    layerdrop=0.0,
    mask_length=5,
    average_top_k_layers=2,
)


def small_model(**overrides) -> Data2VecPretraining:
    torch.manual_seed(0)
    return Data2VecPretraining(data2vec_config("base", **{**SMALL, **overrides}))


def batch(seed: int = 0) -> AudioBatch:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16000) / 16000
    f0 = torch.tensor([180.0, 260.0, 330.0])[:, None]
    wavs = 0.3 * torch.sin(2 * torch.pi * f0 * t * (1 + 2 * t)) + 0.02 * torch.randn(
        3, 16000, generator=g
    )
    return AudioBatch(wavs, torch.tensor([16000, 16000, 16000]), ["a", "b", "c"])


def test_base_preset_follows_reference():
    cfg = data2vec_config("base")
    assert (cfg.extractor_mode, cfg.normalize_waveform, cfg.feature_grad_mult) == (
        "layer",
        True,
        1.0,
    )
    assert (cfg.pos_conv_style, cfg.pos_conv_depth, cfg.pos_conv_kernel) == (
        "layer_norm_stack",
        5,
        19,
    )
    assert (cfg.mask_prob, cfg.mask_length, cfg.min_masks) == (0.65, 10, 1)
    assert (cfg.average_top_k_layers, cfg.loss_beta, cfg.loss_scale) == (8, 0.0, None)
    assert (cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step) == (0.999, 0.9999, 30000)
    assert (cfg.input_dropout, cfg.feature_dropout, cfg.layerdrop) == (0.0, 0.0, 0.05)
    assert get_method("data2vec").config_cls is Data2VecConfig
    with pytest.raises(ValueError, match="average_top_k_layers"):
        Data2VecPretraining(data2vec_config("tiny", average_top_k_layers=5))


def test_tau_schedule():
    cfg = data2vec_config("base")
    assert ema_decay_at(cfg, 0) == pytest.approx(0.999)
    assert ema_decay_at(cfg, 15000) == pytest.approx(0.99945)
    assert ema_decay_at(cfg, 30000) == pytest.approx(0.9999)
    assert ema_decay_at(cfg, 400000) == pytest.approx(0.9999)


def test_teacher_shares_pos_conv_and_gets_no_gradient():
    model = small_model()
    assert model.teacher.pos_conv is model.backbone.encoder.pos_conv
    assert model.teacher.layers[0].fc1.weight is not model.backbone.encoder.layers[0].fc1.weight
    model.train()
    assert not model.teacher.training and model.backbone.encoder.layers[0].training
    out = model(batch())
    out.loss.backward()
    for name, p in model.teacher.named_parameters():
        if not name.startswith("pos_conv."):
            assert p.grad is None and not p.requires_grad, name
    assert model.backbone.encoder.pos_conv.layers[0].conv.weight.grad is not None


def test_ema_update_math():
    model = small_model(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    with torch.no_grad():
        for p in model.backbone.encoder.parameters():
            p.add_(1.0)  # the student moves away from the teacher copy
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student = model.backbone.encoder.state_dict()
    model.after_optimizer_step(5)
    tau = 0.99 - (0.99 - 0.9) * 0.5
    assert model.ema_decay == pytest.approx(tau)
    for key, value in model.teacher.state_dict().items():
        if key.startswith("pos_conv."):
            assert torch.equal(value, student[key])  # shared, not averaged
        else:
            expected = tau * teacher_before[key] + (1 - tau) * student[key]
            assert torch.allclose(value, expected, atol=1e-6), key


def test_targets_are_instance_normed_top_k_ffn_outputs():
    model = small_model().eval()
    b = batch()
    feats, lengths = model.backbone.extract_features(b.wavs, b.lengths)
    y = model.backbone.feature_projection.projection(
        model.backbone.feature_projection.layer_norm(feats)
    )
    captured = []
    hooks = [
        layer.fc2.register_forward_hook(lambda m, i, o: captured.append(o))
        for layer in model.teacher.layers
    ]
    targets = model.targets(y, lengths)
    for h in hooks:
        h.remove()
    assert len(captured) == 3
    top = [F.instance_norm(o.transpose(1, 2), eps=1e-5).transpose(1, 2) for o in captured[-2:]]
    assert torch.allclose(targets, (top[0] + top[1]) / 2, atol=1e-5)


def test_instance_norm_ignores_padding():
    x = torch.randn(2, 10, 4)
    valid = torch.arange(10)[None, :] < torch.tensor([10, 6])[:, None]
    y = instance_norm_time(x, valid)
    alone = F.instance_norm(x[1:, :6].transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(y[1, :6], alone[0], atol=1e-5) and (y[1, 6:] == 0).all()


def test_loss_recomputed_outside_the_model():
    """data2vec's loss from its parts, written out here (fairseq data2vec_audio): the teacher
    runs on the *unmasked* projected features; targets = the top-K teacher layers' FFN outputs,
    each instance-normed over time, averaged; L2 over the masked frames only, summed over dims,
    times 1/sqrt(D); plus the feature penalty."""
    model = small_model(dropout=0.0, attention_dropout=0.0).eval()
    b = batch()
    out = model(b, torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats, lengths = model.backbone.extract_features(b.wavs, b.lengths)
        proj = model.backbone.feature_projection
        y = proj.projection(proj.layer_norm(feats))
        mask = model.compute_mask(lengths, feats.shape[1], torch.Generator().manual_seed(3))
        student_in = torch.where(mask[..., None], model.backbone.mask_emb, y)
        hidden = model.backbone.encoder(student_in, lengths).hidden_states[-1]
        captured = []
        hooks = [
            layer.fc2.register_forward_hook(lambda m, i, o: captured.append(o))
            for layer in model.teacher.layers
        ]
        model.teacher(y, lengths)
        for h in hooks:
            h.remove()
        normed = [
            (o - o.mean(1, keepdim=True)) / (o.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
            for o in captured[-2:]
        ]
        target = (normed[0] + normed[1]) / 2
        pred = model.final_proj(hidden[mask])
        l2 = ((pred - target[mask]) ** 2).sum() / math.sqrt(pred.shape[-1])
        pen = feats.pow(2).mean() * model.cfg.feature_penalty_weight * int(mask.sum())
    assert out.sample_size == int(mask.sum()) > 0
    assert float(out.loss) == pytest.approx(float(l2 + pen), rel=1e-4)
    assert 0.3 < float(out.stats["mask_fraction"]) < 0.7


def test_loss_decreases_on_fixed_batch():
    """Fixed batch and mask, the base EMA schedule (the teacher moves ~3% in 30 updates)."""
    model = small_model(dropout=0.0, attention_dropout=0.0)
    b = batch()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(30):
        model.set_num_updates(step)
        out = model(b, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        model.after_optimizer_step(step + 1)
        losses.append(float(out.stats["regression"]))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_collapse_guard():
    model = small_model(collapse_check_after=0, min_target_var=1e6)
    model.set_num_updates(1)
    with pytest.raises(RuntimeError, match="collapsed at update 1"):
        model(batch())


def test_trainer_updates_teacher_and_exports_student(data_dir, tmp_path):
    from speechssl.data.dataset import AudioDataset
    from speechssl.train import Trainer, TrainerConfig
    from speechssl.upstream import load_upstream

    model = small_model(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=4)
    before = model.teacher.layers[0].fc1.weight.clone()
    cfg = TrainerConfig(
        max_updates=2, max_batch_seconds=2.0, warmup_updates=1, log_every=1, progress_bar=False
    )
    config = {"method": "data2vec", "model": dataclasses.asdict(model.cfg)}
    result = Trainer(model, AudioDataset(data_dir), cfg, tmp_path / "exp", config=config).train()
    assert model.ema_decay == pytest.approx(0.99 - 0.09 * 0.5)
    assert not torch.equal(model.teacher.layers[0].fc1.weight, before)
    upstream = load_upstream(result["checkpoint"])
    assert upstream.method == "data2vec"
    student = model.backbone.state_dict()
    for key, value in upstream.model.state_dict().items():
        assert torch.equal(value, student[key]), key
