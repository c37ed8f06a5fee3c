"""Batched greedy CTC decoding on the GPU in one pass over the logits (Triton).

One program per (utterance, block of frames) reads its frames' scores once (bf16 or fp32, no
log-softmax: the argmax is the same) and writes each frame's argmax and its score. The rest
works on those two (B, T) arrays, on the device: ``keep`` = valid, not blank, not the previous
frame's argmax; a cumulative sum compacts the kept ids; only they and their counts go to the
host (:func:`ctc_greedy_batch`). :func:`ctc_greedy_spans` also gives each token's frame span
and peak score, and each utterance's path score, for word timestamps and confidences
(``CTCDecoder.greedy_batch``).

Block sizes: a tile of ``BLOCK_T`` frames x ``BLOCK_V`` scores (``TILES``: none spills or needs
more than 128 registers a thread on an H100, ``bench/ptxas_tiles.py``); on a GPU
``triton.autotune`` picks the fastest per vocabulary size at the first call (about a second).
On a CPU tensor the same kernel runs under Triton's interpreter when ``TRITON_INTERPRET=1``
(the tests), else a PyTorch version of the same steps. The CPU reference it is tested against is
:meth:`speechssl.asr.decode.CTCDecoder.greedy`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with the pinned torch
    triton = None

# (BLOCK_T, BLOCK_V, num_warps): tiles of 1,024-8,192 scores, 8-32 a thread; a narrow tall tile
# costs more registers than a wide one of the same size (bench/ptxas_tiles.py), so the tiles grow
# in width, not height
TILES = [(32, 32, 4), (64, 32, 4), (128, 32, 8), (16, 64, 4), (16, 128, 4), (16, 256, 4),
         (8, 512, 4), (4, 1024, 4), (16, 512, 8), (8, 1024, 8)]  # fmt: skip


if triton is not None:

    @triton.jit
    def _argmax_kernel(
        logits_ptr, lengths_ptr, ids_ptr, best_ptr, T, V, stride_b, stride_t,
        BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0)
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        in_t = t < tl.load(lengths_ptr + b)
        best = tl.full([BLOCK_T], -float("inf"), tl.float32)
        arg = tl.full([BLOCK_T], -1, tl.int32)
        row = logits_ptr + b.to(tl.int64) * stride_b + t[:, None].to(tl.int64) * stride_t
        for v0 in range(0, V, BLOCK_V):
            v = v0 + tl.arange(0, BLOCK_V)
            x = tl.load(row + v[None, :], mask=in_t[:, None] & (v[None, :] < V),
                        other=-float("inf")).to(tl.float32)  # fmt: skip
            block_best, block_arg = tl.max(x, axis=1, return_indices=True)
            better = block_best > best  # strict: the first maximum wins, as torch.argmax
            arg = tl.where(better, block_arg.to(tl.int32) + v0, arg)
            best = tl.where(better, block_best, best)
        out = b * T + t
        tl.store(ids_ptr + out, arg, mask=t < T)  # frames past the length: -1, -inf
        tl.store(best_ptr + out, best, mask=t < T)

    def _prune(configs, named_args, **kwargs):
        width = _widest(named_args["V"])
        return [c for c in configs if c.kwargs["BLOCK_V"] <= width]

    _argmax_tuned = triton.autotune(
        [triton.Config({"BLOCK_T": t, "BLOCK_V": v}, num_warps=w) for t, v, w in TILES],
        key=["V"],
        prune_configs_by={"early_config_prune": _prune},
    )(_argmax_kernel)


def _use_kernel(device: torch.device) -> bool:
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _widest(v: int) -> int:
    """The widest tile worth trying for ``v`` scores a frame: ``v`` rounded up to a power of
    two, at least the narrowest tile."""
    return max(TILES[0][1], triton.next_power_of_2(v))


def _interpreted_tile(v: int) -> tuple[int, int]:
    """The tile the interpreter runs (no autotuning there): the widest 4-warp one for ``v``."""
    fits = [(t, w) for t, w, warps in TILES if warps == 4 and w <= _widest(v)]
    return max(fits, key=lambda tile: tile[1])


def best_path(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, tile: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, T, V)`` scores -> (B, T) int32 argmax per frame and its float32 score (-1 and -inf
    past each utterance's length), and the (B,) int64 lengths, all on the logits' device.
    ``tile``: (BLOCK_T, BLOCK_V) for the kernel instead of the autotuned or default one."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), found {tuple(logits.shape)}")
    b, t, v = logits.shape
    if lengths is None:
        lengths = torch.full((b,), t)
    lengths = lengths.to(logits.device, torch.int64)
    if not _use_kernel(logits.device) or t == 0 or b == 0:
        best, ids = logits.float().max(-1)
        valid = torch.arange(t, device=logits.device)[None, :] < lengths[:, None]
        ids = torch.where(valid, ids.to(torch.int32), -1)
        return ids, torch.where(valid, best, float("-inf")), lengths
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    ids = torch.empty(b, t, dtype=torch.int32, device=logits.device)
    best = torch.empty(b, t, dtype=torch.float32, device=logits.device)
    args = (logits, lengths.to(torch.int32), ids, best, t, v, logits.stride(0), logits.stride(1))
    if logits.device.type == "cuda" and tile is None:
        _argmax_tuned[lambda meta: (b, triton.cdiv(t, meta["BLOCK_T"]))](*args)
    else:
        block_t, block_v = tile or _interpreted_tile(v)
        _argmax_kernel[(b, triton.cdiv(t, block_t))](*args, BLOCK_T=block_t, BLOCK_V=block_v)
    return ids, best, lengths


def _run_starts(ids: torch.Tensor) -> torch.Tensor:
    """Valid frames whose argmax differs from the previous frame's: where each run starts."""
    prev = torch.nn.functional.pad(ids[:, :-1], (1, 0), value=-1)
    return (ids >= 0) & (ids != prev)


def _split(flat: list, counts: list[int]) -> list[list]:
    out, start = [], 0
    for c in counts:
        out.append(flat[start : start + c])
        start += c
    return out


def ctc_greedy_batch(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """``(B, T, V)`` logits (or log-probabilities) and ``(B,)`` valid frames -> each
    utterance's greedy CTC labelling (repeats merged, blanks removed) as token ids."""
    ids, _, _ = best_path(logits, lengths)
    keep = _run_starts(ids) & (ids != blank)
    counts = keep.sum(1)
    packed = ids[keep]  # row-major: each utterance's kept ids in order, compacted on the device
    return _split(packed.cpu().tolist(), counts.cpu().tolist())  # only the kept ids move


@dataclass
class GreedySpans:
    tokens: list[int]
    starts: list[int]  # first frame of each token's run
    ends: list[int]  # one past its last frame
    peaks: list[float]  # its highest score along the run
    path_score: float  # the sum of the best path's frame scores (float64)


def ctc_greedy_spans(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[GreedySpans]:
    """The greedy labelling of each utterance with each token's run of frames and peak score
    (as ``CTCDecoder.greedy`` reads them off the best path), computed on the device; only
    those values, a few per token, are copied to the host."""
    ids, best, lengths = best_path(logits, lengths)
    b, t = ids.shape
    valid = ids >= 0
    run_start = _run_starts(ids)
    run = torch.cumsum(run_start.flatten().long(), 0) - 1  # each frame's run, row-major
    row, start = run_start.nonzero(as_tuple=True)
    peak = torch.full((len(row),), float("-inf"), device=ids.device)
    peak.scatter_reduce_(0, run[valid.flatten()], best.flatten()[valid.flatten()], "amax")
    same_row = torch.zeros_like(row, dtype=torch.bool)  # the next run is in the same utterance
    same_row[:-1] = row[1:] == row[:-1]
    end = torch.where(same_row, torch.roll(start, -1), lengths[row])
    label = ids[row, start]
    keep = label != blank
    score = torch.where(valid, best.double(), 0.0).sum(1)
    counts = torch.bincount(row[keep], minlength=b)
    ints = torch.stack([label[keep].long(), start[keep], end[keep]]).cpu().tolist()
    peaks, score, counts = peak[keep].cpu().tolist(), score.cpu().tolist(), counts.cpu().tolist()
    columns = [_split(x, counts) for x in (*ints, peaks)]
    return [GreedySpans(*(c[i] for c in columns), path_score=score[i]) for i in range(b)]
