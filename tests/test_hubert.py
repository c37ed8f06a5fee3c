"""HuBERT: loss, label alignment, training on a fixed batch, iteration-2 labels from a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from speechssl.data.dataset import AudioBatch, AudioDataset
from speechssl.kmeans import (
    KmeansConfig,
    dump_labels,
    fit_kmeans,
    read_labels,
)
from speechssl.ssl import build_model, get_method
from speechssl.ssl.hubert import (
    HubertConfig,
    HubertPretraining,
    LabelAlignmentError,
    hubert_config,
    hubert_config_for_labels,
)
from speechssl.upstream import load_upstream, save_upstream

SMALL = dict(
    conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    ffn_dim=64,
    pos_conv_kernel=16,
    pos_conv_groups=2,
    layerdrop=0.0,
    feature_grad_mult=1.0,
    final_dim=16,
    mask_length=5,
)
SMALL_LABELLED = {**SMALL, "num_classes": 8}


def small_config(**overrides) -> HubertConfig:
    return hubert_config("base", **{**SMALL_LABELLED, **overrides})


def mfcc_like_batch(seed: int = 0, classes: int = 8) -> AudioBatch:
    """Three utterances with 100 Hz labels that follow the signal (a tone per label run)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 14400, 12800])
    runs = torch.randint(0, classes, (3, 20), generator=g)  # 20 runs of 5 labels (50 ms)
    labels = runs.repeat_interleave(5, dim=1)[:, :99]
    t = torch.arange(160) / 16000
    wavs = torch.zeros(3, 16000)
    for b in range(3):
        tones = [torch.sin(2 * torch.pi * (200 + 150 * int(c)) * t) for c in labels[b]]
        wavs[b, : 99 * 160] = 0.3 * torch.cat(tones)
        wavs[b, int(lengths[b]) :] = 0
    label_lengths = torch.div(lengths - 400, 160, rounding_mode="floor") + 1
    for b in range(3):
        labels[b, int(label_lengths[b]) :] = -100
    return AudioBatch(wavs, lengths, ["u1", "u2", "u3"], labels, label_lengths)


def test_presets_follow_fairseq_base():
    cfg = hubert_config("base")
    assert (cfg.mask_prob, cfg.mask_length, cfg.min_masks) == (0.8, 10, 2)
    assert (cfg.final_dim, cfg.untie_final_proj, cfg.feature_grad_mult) == (256, True, 0.1)
    assert (cfg.layerdrop, cfg.logit_temperature, cfg.feature_penalty_weight) == (0.05, 0.1, 10.0)
    assert (cfg.pred_masked_weight, cfg.pred_nomask_weight) == (1.0, 0.0)
    large = hubert_config("large")
    assert large.final_dim == 768 and large.layer_norm_first and large.normalize_waveform


def test_registered_method():
    assert get_method("hubert").config_cls is HubertConfig
    model = build_model("hubert", preset="tiny", num_classes=5)
    assert isinstance(model, HubertPretraining) and model.label_embs_concat.shape == (5, 64)


def test_forward_backward_finite():
    torch.manual_seed(0)
    model = HubertPretraining(small_config())
    batch = mfcc_like_batch()
    # p 0.8, spans of 5 with overlap, trimmed to the batch minimum (require_same_masks): about
    # half of these short rows' frames, varying with the draw
    fractions = [
        float(model(batch, torch.Generator().manual_seed(i)).stats["mask_fraction"])
        for i in range(20)
    ]
    assert 0.4 < sum(fractions) / 20 < 0.6 and max(fractions) <= 0.9
    out = model(batch)
    assert torch.isfinite(out.loss) and out.sample_size > 0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _hand_loss(model: HubertPretraining, batch: AudioBatch, seed: int) -> tuple[float, int]:
    """HuBERT's loss written out here (fairseq hubert + hubert_criterion, weights 1 / 0):
    cross-entropy of cosine(final_proj(h), label embedding) / 0.1 over masked labelled frames,
    the label of frame t being labels[floor(t * 100 / 50)], plus 10 * mean(conv feats^2) * S."""
    with torch.no_grad():
        feats, lengths = model.backbone.extract_features(batch.wavs, batch.lengths)
        proj = model.backbone.feature_projection
        y = proj.projection(proj.layer_norm(feats))
        mask = model.compute_mask(lengths, feats.shape[1], torch.Generator().manual_seed(seed))
        x = torch.where(mask[..., None], model.backbone.mask_emb, y)
        hidden = model.backbone.encoder(x, lengths).hidden_states[-1]
        total, count = 0.0, 0
        for b in range(len(lengths)):
            for t in range(int(lengths[b])):
                label = int(batch.labels[b, 2 * t]) if 2 * t < batch.label_lengths[b] else -100
                if not mask[b, t] or label < 0:
                    continue
                p = model.final_proj(hidden[b, t])
                cos = torch.cosine_similarity(p[None], model.label_embs_concat, dim=-1) / 0.1
                total += float(torch.logsumexp(cos, 0) - cos[label])
                count += 1
        valid = torch.arange(feats.shape[1])[None, :] < lengths[:, None]
        pen = float(feats.pow(2).mean(-1)[valid].mean()) * 10.0 * count
    return total + pen, count


def test_loss_recomputed_outside_the_model_and_blind_to_unmasked_labels():
    torch.manual_seed(0)
    model = HubertPretraining(small_config(dropout=0.0, attention_dropout=0.0)).eval()
    batch = mfcc_like_batch()
    out = model(batch, torch.Generator().manual_seed(2))
    expected, count = _hand_loss(model, batch, 2)
    assert out.sample_size == count > 0
    assert float(out.loss) == pytest.approx(expected, rel=1e-4)
    # unmasked weight 0: other labels on the unmasked frames leave the loss as it is
    enc = model.encode_masked(batch, torch.Generator().manual_seed(2))
    relabelled = mfcc_like_batch()
    for b in range(3):
        for t in range(int(enc.lengths[b])):
            if not enc.mask[b, t] and 2 * t < relabelled.label_lengths[b]:
                relabelled.labels[b, 2 * t : 2 * t + 2] = (relabelled.labels[b, 2 * t] + 3) % 8
    changed = model(relabelled, torch.Generator().manual_seed(2))
    assert not torch.equal(relabelled.labels, batch.labels)
    assert float(changed.loss) == pytest.approx(float(out.loss), rel=1e-6)


def test_loss_is_cross_entropy_over_cosine_logits():
    torch.manual_seed(0)
    model = HubertPretraining(small_config())
    hidden = torch.randn(5, 32)
    logits = model.logits(hidden)
    proj = model.final_proj(hidden)
    cos = torch.nn.functional.cosine_similarity(
        proj[:, None, :], model.label_embs_concat[None, :, :], dim=-1
    )
    assert torch.allclose(logits, cos / 0.1, atol=1e-5)


def test_loss_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = HubertPretraining(small_config(dropout=0.0, attention_dropout=0.0, input_dropout=0.0))
    batch = mfcc_like_batch()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        model.set_num_updates(step)
        out = model(batch)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        losses.append(float(out.stats["loss_m"]))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_labels_at_model_rate_and_mismatch_named():
    model = HubertPretraining(small_config(label_rate=50.0))
    batch = mfcc_like_batch()
    frames_50hz = torch.tensor([49, 44, 39])
    labels = torch.full((3, 49), -100)
    for b, n in enumerate(frames_50hz.tolist()):
        labels[b, :n] = torch.arange(n) % 8
    batch50 = dataclasses.replace(batch, labels=labels, label_lengths=frames_50hz)
    targets = model.frame_targets(batch50, frames_50hz, 49)
    assert torch.equal(targets[0], torch.arange(49) % 8)
    # 100 Hz labels read as 50 Hz: twice too long -> error naming the utterance
    with pytest.raises(LabelAlignmentError, match="utterance 'u1'"):
        model.frame_targets(batch, frames_50hz, 49)
    bad = dataclasses.replace(batch50, labels=labels * 3)
    with pytest.raises(ValueError, match="outside 0..7"):
        model.frame_targets(bad, frames_50hz, 49)


def test_missing_labels_explained():
    model = HubertPretraining(small_config())
    batch = dataclasses.replace(mfcc_like_batch(), labels=None, label_lengths=None)
    with pytest.raises(ValueError, match="needs frame labels"):
        model(batch)


def _iteration1(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    km = fit_kmeans(data_dir, tmp_path / "iter1/kmeans", KmeansConfig(n_clusters=8, n_init=1))
    label_dir = tmp_path / "iter1/labels"
    dump_labels(data_dir, km, label_dir, name="train")
    return km, label_dir


def test_iteration2_labels_from_exported_upstream(data_dir: Path, tmp_path: Path):
    _, label_dir = _iteration1(data_dir, tmp_path)
    cfg = hubert_config_for_labels(label_dir, "base", **SMALL)
    assert (cfg.num_classes, cfg.label_rate) == (8, 100.0)
    torch.manual_seed(0)
    model = HubertPretraining(cfg)
    upstream_file = save_upstream(model.export_upstream(), tmp_path / "iter1/upstream.pt")
    km_cfg = KmeansConfig(
        n_clusters=4, n_init=1, feature="upstream", upstream=str(upstream_file), layer=1
    )
    km2 = fit_kmeans(data_dir, tmp_path / "iter2/kmeans", km_cfg)
    labels2 = dump_labels(data_dir, km2, tmp_path / "iter2/labels", name="train")
    meta = yaml.safe_load((tmp_path / "iter2/labels/labels.yaml").read_text())
    assert meta["rate"] == 50.0 and meta["layer"] == 1 and meta["clusters"] == 4
    upstream = load_upstream(upstream_file)
    dataset = AudioDataset(data_dir, crop=None)
    for utt, labels in read_labels(labels2).items():
        wav = dataset.load(dataset.utt_ids.index(utt)).wav
        out = upstream(wav[None], torch.tensor([len(wav)]))
        assert labels.shape == (int(out.lengths[0]),)


def test_trainer_iteration1_then_iteration2(data_dir: Path, tmp_path: Path):
    from speechssl.train import Trainer, TrainerConfig

    _, label_dir = _iteration1(data_dir, tmp_path)
    cfg = hubert_config_for_labels(label_dir, "base", **SMALL)
    dataset = AudioDataset(data_dir, label_dir / "train.km", label_rate=cfg.label_rate)
    trainer_cfg = TrainerConfig(
        max_updates=3, max_batch_seconds=2.0, warmup_updates=1, log_every=1, progress_bar=False
    )
    torch.manual_seed(0)
    config = {"method": "hubert", "model": dataclasses.asdict(cfg)}
    result = Trainer(
        HubertPretraining(cfg), dataset, trainer_cfg, tmp_path / "exp", config=config
    ).train()
    km_cfg = KmeansConfig(
        n_clusters=4, n_init=1, feature="upstream", upstream=result["checkpoint"], layer=2
    )
    km2 = fit_kmeans(data_dir, tmp_path / "iter2/kmeans", km_cfg)
    labels2 = dump_labels(data_dir, km2, tmp_path / "iter2/labels", name="train")
    cfg2 = hubert_config_for_labels(tmp_path / "iter2/labels", "base", **SMALL)
    assert (cfg2.num_classes, cfg2.label_rate) == (4, 50.0)
    # iteration-2 labels load into the dataset at 50 Hz and train
    dataset2 = AudioDataset(data_dir, labels2, label_rate=50.0, num_frames=_conv_frames)
    batch = dataset2.__getitems__([0, 1])
    from speechssl.data.dataset import collate

    out = HubertPretraining(cfg2)(collate(batch))
    assert torch.isfinite(out.loss)


def _conv_frames(samples: int) -> int:
    from speechssl.nn.conv_encoder import conv_output_lengths

    return int(conv_output_lengths(torch.tensor([samples]), SMALL["conv_layers"])[0])


def test_sample_size_counts_every_weighted_term():
    """fairseq's hubert_criterion: with both weights > 0 the sample size is masked + unmasked
    labelled frames, counted here from the mask and the labels."""
    batch = mfcc_like_batch()
    for w_m, w_u in ((1.0, 0.0), (1.0, 0.5), (0.0, 1.0)):
        torch.manual_seed(0)
        model = HubertPretraining(small_config(pred_masked_weight=w_m, pred_nomask_weight=w_u))
        out = model(batch, torch.Generator().manual_seed(4))
        enc = model.encode_masked(batch, torch.Generator().manual_seed(4))
        targets = model.frame_targets(batch, enc.lengths, enc.mask.shape[1])
        labelled = targets != -100
        masked, unmasked = int((enc.mask & labelled).sum()), int((~enc.mask & labelled).sum())
        assert masked > 0 and unmasked > 0
        assert out.sample_size == (masked if w_m else 0) + (unmasked if w_u else 0)
