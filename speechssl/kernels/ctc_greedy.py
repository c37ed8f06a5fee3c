"""Batched greedy CTC decoding on the GPU in one pass over the logits (Triton).

One program per (utterance, block of frames): the argmax over the vocabulary of every frame
(bf16 or fp32 logits, read once, no log-softmax: the argmax is the same), then ``keep`` = not
blank and not equal to the previous frame's argmax (the frame before the block is read too).
PyTorch then compacts the kept ids on the device (a cumulative sum gives each its slot), and
only the compacted ids and their counts are copied to the host.

:func:`ctc_greedy_batch` is the entry point; on a CPU tensor it runs the same kernel under
Triton's interpreter when ``TRITON_INTERPRET=1`` (the tests), else a PyTorch version of the
same steps. The CPU reference it is tested against is :meth:`speechssl.asr.decode.CTCDecoder.greedy`.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with the pinned torch
    triton = None


if triton is not None:

    @triton.jit
    def _argmax_keep_kernel(
        logits_ptr, lengths_ptr, ids_ptr, keep_ptr,
        T, V, stride_b, stride_t, blank,
        BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0)
        t0 = tl.program_id(1) * BLOCK_T
        n = tl.load(lengths_ptr + b)
        # frames t0 - 1 .. t0 + BLOCK_T - 1: the first is the previous frame of the block
        t = t0 - 1 + tl.arange(0, BLOCK_T * 2)
        in_t = (t >= 0) & (t < n) & (t < t0 + BLOCK_T)
        best = tl.full([BLOCK_T * 2], -float("inf"), tl.float32)
        arg = tl.full([BLOCK_T * 2], -1, tl.int32)
        for v0 in range(0, V, BLOCK_V):
            v = v0 + tl.arange(0, BLOCK_V)
            x = tl.load(
                logits_ptr + b * stride_b + t[:, None].to(tl.int64) * stride_t + v[None, :],
                mask=in_t[:, None] & (v[None, :] < V),
                other=-float("inf"),
            ).to(tl.float32)
            block_best = tl.max(x, axis=1)
            block_arg = tl.argmax(x, axis=1).to(tl.int32) + v0
            better = block_best > best  # strict: the first maximum wins, as torch.argmax
            arg = tl.where(better, block_arg, arg)
            best = tl.where(better, block_best, best)
        # shift by one: prev[i] = arg[i - 1] within the window
        offs = tl.arange(0, BLOCK_T * 2)
        out_t = t0 + tl.arange(0, BLOCK_T)
        idx = tl.arange(0, BLOCK_T) + 1  # window position of frame out_t
        cur = tl.sum(tl.where(offs[None, :] == idx[:, None], arg[None, :], 0), axis=1)
        prev = tl.sum(tl.where(offs[None, :] == idx[:, None] - 1, arg[None, :], 0), axis=1)
        prev = tl.where(out_t == 0, -1, prev)
        valid = out_t < n
        keep = valid & (cur != blank) & (cur != prev)
        tl.store(ids_ptr + b * T + out_t, cur, mask=out_t < T)
        tl.store(keep_ptr + b * T + out_t, keep.to(tl.int8), mask=out_t < T)


def _argmax_keep_torch(logits: torch.Tensor, lengths: torch.Tensor, blank: int):
    ids = logits.argmax(-1).to(torch.int32)
    prev = torch.nn.functional.pad(ids[:, :-1], (1, 0), value=-1)
    valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    return ids, valid & (ids != blank) & (ids != prev)


def _use_kernel(device: torch.device) -> bool:
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def ctc_greedy_batch(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """``(B, T, V)`` logits (or log-probabilities) and ``(B,)`` valid frames -> each
    utterance's greedy CTC labelling (repeats merged, blanks removed) as token ids."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), found {tuple(logits.shape)}")
    b, t, v = logits.shape
    if lengths is None:
        lengths = torch.full((b,), t, device=logits.device)
    lengths = lengths.to(logits.device, torch.int32)
    if t == 0 or b == 0:
        return [[] for _ in range(b)]
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    if _use_kernel(logits.device):
        ids = torch.empty(b, t, dtype=torch.int32, device=logits.device)
        keep = torch.empty(b, t, dtype=torch.int8, device=logits.device)
        block_t = 32
        block_v = min(1024, triton.next_power_of_2(v))
        grid = (b, triton.cdiv(t, block_t))
        _argmax_keep_kernel[grid](
            logits, lengths, ids, keep, t, v, logits.stride(0), logits.stride(1), blank,
            BLOCK_T=block_t, BLOCK_V=block_v,
        )  # fmt: skip
        keep = keep.bool()
    else:
        ids, keep = _argmax_keep_torch(logits, lengths, blank)
    counts = keep.sum(1)
    slots = torch.cumsum(keep.to(torch.int64).flatten(), 0) - 1  # compaction on the device
    packed = torch.empty(int(counts.sum()), dtype=torch.int32, device=ids.device)
    packed[slots[keep.flatten()]] = ids.flatten()[keep.flatten()]
    packed, counts = packed.cpu().tolist(), counts.cpu().tolist()  # only the kept ids move
    out, start = [], 0
    for c in counts:
        out.append(packed[start : start + c])
        start += c
    return out
