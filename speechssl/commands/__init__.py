"""The ``speechssl`` commands, one module each: ``add_parser(subparsers)`` adds the command's
parser (its ``help`` is the line ``speechssl --help`` shows) and sets ``run``; ``run(args) -> int``
calls the library. Library imports sit inside the functions, so ``speechssl data ...`` starts
without loading torch. A new command is a module here listed in :data:`speechssl.cli.COMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def comma_separated(kind: type = float) -> Callable[[str], list]:
    """An argparse ``type``: ``"1e-3,1e-2"`` -> ``[0.001, 0.01]``."""
    noun = "numbers" if kind is float else "integers"

    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {noun}, found {text!r}"
            ) from None

    return parse


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    """The model and decoder options of ``asr-decode`` and ``transcribe``."""
    from speechssl.asr.decode import DecoderConfig

    p.add_argument("--model", required=True, help="ASR model (model.pt, checkpoint or exp dir)")
    p.add_argument("--lm", help="KenLM (ARPA or binary) for shallow fusion in beam search")
    p.add_argument("--alpha", type=float, default=DecoderConfig.alpha, help="LM weight")
    p.add_argument("--beta", type=float, default=DecoderConfig.beta, help="word insertion bonus")
    p.add_argument("--nj", type=int, default=1, help="beam-search processes (CPU search)")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu | cuda | cuda:N: where the model runs; on cuda the beam search runs there "
        "too, batched (the LM must be an ARPA file or have one beside it)",
    )
    p.add_argument(
        "--enhance", metavar="MODEL", help="enhance the audio first with this enhancer (model.pt)"
    )


def check_device(device: str) -> None:
    """An ``error:`` line (not a CUDA traceback) for ``--device cuda`` without a GPU."""
    import torch

    from speechssl.errors import SpeechSSLError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpeechSSLError(f"--device {device}: no CUDA device here; use --device cpu")


def add_config_options(p: argparse.ArgumentParser, example: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (``speechssl.config.load_config``)."""
    p.add_argument("--config", help=f"YAML of values (e.g. {example})")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. trainer.max_updates=100 (repeatable)",
    )
