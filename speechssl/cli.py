"""``speechssl <command>``: one entry point over the command modules of :mod:`speechssl.commands`.

Bad input ends in one ``error:`` line naming what is wrong (exit status 1), not a traceback:
the project's own errors (:class:`~speechssl.errors.SpeechSSLError`), missing files, bad values,
and argparse's usage errors.
"""

from __future__ import annotations

import argparse
import logging
import sys

from speechssl.commands import (
    asr_decode,
    asr_train,
    data,
    enhance,
    enhance_eval,
    enhance_train,
    export,
    features,
    kmeans,
    lm,
    merge_decodes,
    prepare,
    pretrain,
    pseudo_label,
    selftrain_report,
    superb,
    synth,
    transcribe,
)
from speechssl.errors import SpeechSSLError

# in the order ``speechssl --help`` lists them; a module's name is its command's, "_" -> "-"
COMMANDS = (data, synth, features, kmeans, pretrain, export, asr_train, asr_decode, merge_decodes, lm,
            pseudo_label, selftrain_report, transcribe, enhance_train, enhance, enhance_eval, superb, prepare)  # fmt: skip
ERRORS = (SpeechSSLError, OSError, ValueError, KeyError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one "error:" line and exit 1 (not argparse's usage, 2)
        raise SpeechSSLError(message)


def build_parser(commands=COMMANDS) -> argparse.ArgumentParser:
    parser = _Parser(prog="speechssl", description="Speech self-supervised learning toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in commands:
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def _command_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1].replace("_", "-")


class _StderrHandler(logging.StreamHandler):
    """The ``speechssl`` loggers' lines on whatever ``sys.stderr`` is at the time: INFO as
    the message (``resumed from ... at update N``), warnings as ``WARNING: message``."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


def _log_to_terminal() -> None:
    logger = logging.getLogger("speechssl")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Without ``argv`` this is the program itself (console script,
    ``python -m speechssl.cli``); a caller passing ``argv`` may run several commands in one
    process."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    _log_to_terminal()
    # only the named command's parser is built: its library imports (torch) wait until needed
    chosen = [m for m in COMMANDS if argv and _command_name(m) == argv[0]]
    try:
        args = build_parser(chosen or COMMANDS).parse_args(argv)
        code = args.run(args)
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    if program and "torch.distributed" in sys.modules:
        from speechssl.train.distributed import exit_process, in_process_group

        if in_process_group():  # the program is a torchrun worker: see exit_process
            exit_process(int(code or 0))
    return code


def command_main(name: str):
    """``main(argv)`` of the one command ``name``: ``speechssl <name> ARGV`` (tests, scripts)."""
    return lambda argv=None: main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
