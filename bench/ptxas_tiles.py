"""Registers and spills of the greedy CTC kernel's tiles for an H100 (sm_90a), with no GPU:
Triton compiles each tile to PTX and ptxas (shipped in Triton's wheel) reports its resources.

    python bench/ptxas_tiles.py            # every tile of speechssl.kernels.ctc_greedy.TILES

A tile that spills (or uses so many registers that few warps fit on an SM) cannot read the
logits near the memory bandwidth: the check behind the greedy kernel's tile list.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from speechssl.kernels.ctc_greedy import TILES, _argmax_kernel

SIGNATURE = {"logits_ptr": "*bf16", "lengths_ptr": "*i32", "ids_ptr": "*i32", "best_ptr": "*fp32",
             "T": "i32", "V": "i32", "stride_b": "i32", "stride_t": "i32",
             "BLOCK_T": "constexpr", "BLOCK_V": "constexpr"}  # fmt: skip


def resources(block_t: int, block_v: int, warps: int, dtype: str) -> dict:
    sig = dict(SIGNATURE, logits_ptr=f"*{dtype}")
    src = ASTSource(_argmax_kernel, sig, constexprs={"BLOCK_T": block_t, "BLOCK_V": block_v})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        log = subprocess.run([ptxas, "-arch=sm_90a", "-v", ptx, "-o", os.path.join(tmp, "k.o")],
                             capture_output=True, text=True, check=True).stderr  # fmt: skip
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
    return {"registers": regs, "spill_bytes": spill, "warps_per_sm": min(64, 65536 // (regs * 32))}


def main() -> None:
    print(f"triton {triton.__version__}, target sm_90a (H100)")
    print(f"{'BLOCK_T':>7} {'BLOCK_V':>7} {'warps':>5} {'dtype':>5} {'regs':>5} {'spill B':>7} "
          f"{'warps/SM':>8}")  # fmt: skip
    for block_t, block_v, warps in TILES:
        for dtype in ("bf16", "fp32"):
            r = resources(block_t, block_v, warps, dtype)
            print(f"{block_t:7d} {block_v:7d} {warps:5d} {dtype:>5} {r['registers']:5d} "
                  f"{r['spill_bytes']:7d} {r['warps_per_sm']:8d}")  # fmt: skip


if __name__ == "__main__":
    main()
