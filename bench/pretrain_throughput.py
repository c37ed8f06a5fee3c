"""wav2vec 2.0 pretraining throughput and peak memory: speechssl vs Hugging Face transformers'
``Wav2Vec2ForPreTraining`` in the same run (same dims, batch, precision, optimizer).

One step = forward + backward + AdamW step. Timed with CUDA events after warm-up (wall clock on
CPU); the median step gives audio-seconds per second; peak memory is
``torch.cuda.max_memory_allocated`` per model (resident-set growth on CPU is not comparable
between models in one process, so CPU runs report time only).

    python bench/pretrain_throughput.py                      # GPU: BASE, B=8 x 15.6 s, bf16
    python bench/pretrain_throughput.py --device cpu --preset tiny --batch 2 --seconds 2 --steps 3

Prints a table last: audio-s/s, peak GB, and the speechssl/HF ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speechssl.data.dataset import AudioBatch  # noqa: E402
from speechssl.ssl.wav2vec2 import Wav2Vec2Pretraining, wav2vec2_config  # noqa: E402


def hf_model(cfg):
    from transformers import Wav2Vec2Config as HFConfig
    from transformers import Wav2Vec2ForPreTraining

    conv = cfg.conv_layers
    hf_cfg = HFConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_dim,
        conv_dim=[c[0] for c in conv],
        conv_kernel=[c[1] for c in conv],
        conv_stride=[c[2] for c in conv],
        conv_bias=cfg.conv_bias,
        feat_extract_norm=cfg.extractor_mode,
        do_stable_layer_norm=cfg.layer_norm_first,
        num_conv_pos_embeddings=cfg.pos_conv_kernel,
        num_conv_pos_embedding_groups=cfg.pos_conv_groups,
        num_codevectors_per_group=cfg.codebook_entries,
        num_codevector_groups=cfg.codebook_groups,
        codevector_dim=cfg.codevector_dim or cfg.final_dim,
        proj_codevector_dim=cfg.final_dim,
        num_negatives=cfg.num_negatives,
        mask_time_prob=cfg.mask_prob,
        mask_time_length=cfg.mask_length,
        layerdrop=cfg.layerdrop,
        hidden_dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        feat_proj_dropout=cfg.input_dropout,
        feat_quantizer_dropout=cfg.feature_dropout,
        diversity_loss_weight=cfg.diversity_weight,
    )
    hf_cfg._attn_implementation = "sdpa"
    return Wav2Vec2ForPreTraining(hf_cfg)


def hf_step_inputs(model, wavs):
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        _compute_mask_indices,
        _sample_negative_indices,
    )

    b = wavs.shape[0]
    t = int(model._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
    cfg = model.config
    mask = _compute_mask_indices((b, t), cfg.mask_time_prob, cfg.mask_time_length, min_masks=2)
    neg = _sample_negative_indices((b, t), cfg.num_negatives, mask_time_indices=mask)
    dev = wavs.device
    return {
        "input_values": wavs,
        "mask_time_indices": torch.tensor(mask, device=dev, dtype=torch.bool),
        "sampled_negative_indices": torch.tensor(neg, device=dev, dtype=torch.long),
    }


def time_steps(step, steps: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return times


def run(name, model, make_loss, args, device, dtype):
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = make_loss()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = time_steps(step, args.steps, args.warmup, device)
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan")
    audio = args.batch * args.seconds
    med = statistics.median(times)
    print(
        f"{name}: median step {med * 1000:.1f} ms, {audio / med:.1f} audio-s/s, peak {peak:.2f} GB"
    )
    model.to("cpu")
    return audio / med, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    torch.manual_seed(0)
    n = int(args.seconds * 16000)
    wavs = (torch.randn(args.batch, n) * 0.1).to(device)
    lengths = torch.full((args.batch,), n, device=device)
    cfg = wav2vec2_config(args.preset)

    ours = Wav2Vec2Pretraining(cfg)
    batch = AudioBatch(wavs=wavs, lengths=lengths, utt_ids=[str(i) for i in range(args.batch)])
    counter = iter(range(10**9))

    def our_loss():
        ours.set_num_updates(next(counter))
        out = ours(batch)
        return out.loss / out.sample_size

    r_ours, m_ours = run("speechssl", ours, our_loss, args, device, dtype)
    ours = None  # free its memory before the peer runs

    hf = hf_model(cfg)
    hf_inputs = hf_step_inputs(hf, wavs)
    r_hf, m_hf = run("transformers", hf, lambda: hf(**hf_inputs).loss, args, device, dtype)

    print(
        f"\nwav2vec2 {args.preset}, B={args.batch} x {args.seconds} s, {args.precision}, "
        f"{device.type}"
    )
    print(f"{'':14s}{'audio-s/s':>12s}{'peak GB':>10s}")
    print(f"{'speechssl':14s}{r_ours:12.1f}{m_ours:10.2f}")
    print(f"{'transformers':14s}{r_hf:12.1f}{m_hf:10.2f}")
    print(f"speechssl/transformers: throughput x{r_ours / r_hf:.2f}, memory x{m_ours / m_hf:.2f}")


if __name__ == "__main__":
    main()
