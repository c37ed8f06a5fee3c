"""The last bad-input cases of the outside battery: each is one `error:`/`WARNING` line naming
the file or utterance, exit status 1 where the command cannot go on, and no traceback; and the
Trainer's resume line reaches the terminal."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import make_data_dir

from speechssl.cli import main

PRETRAIN = ["--set", "preset=tiny", "--set", "model.hidden_size=16"]
PRETRAIN += ["--set", "trainer.progress_bar=false", "--set", "trainer.max_batch_seconds=3.0"]


def _pretrain(data: Path, exp: Path, updates: int) -> list[str]:
    argv = ["pretrain", "--method", "apc", "--data", str(data), "--exp", str(exp)]
    return argv + PRETRAIN + ["--set", f"trainer.max_updates={updates}"]


def test_every_checkpoint_unreadable_is_one_error_line(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    ckpts = tmp_path / "exp" / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("ckpt-2.pt", "last.pt"):
        (ckpts / name).write_bytes(b"PK\x03\x04 not a checkpoint")
    assert main(_pretrain(data, tmp_path / "exp", 2)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(ckpts) in errors[0] and "delete the folder" in errors[0]
    # each unreadable file was named on its own WARNING line before that
    assert sum(line.startswith("WARNING: ") for line in err.splitlines()) == 2


def test_a_method_config_typo_is_one_error_line(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    argv = _pretrain(data, tmp_path / "exp", 2) + ["--set", "model.bogus_key=1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "TypeError" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown field(s) ['bogus_key']" in errors[0]
    assert not (tmp_path / "exp" / "checkpoints").exists()  # stopped before training


def test_resume_and_fresh_start_are_said_on_the_terminal(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    assert main(_pretrain(data, tmp_path / "exp", 2)) == 0
    assert "training from scratch" in capsys.readouterr().err
    assert main(_pretrain(data, tmp_path / "exp", 3)) == 0
    err = capsys.readouterr().err
    assert f"resumed from {tmp_path / 'exp' / 'checkpoints' / 'last.pt'} at update 2" in err


def test_asr_train_without_transcripts_names_the_data_dir(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    (data / "text").unlink()
    assert main(["asr-train", "--data", str(data), "--exp", str(tmp_path / "exp")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {data}: no 'text' file")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "wav.scp").write_text("")
    assert main(["asr-train", "--data", str(empty), "--exp", str(tmp_path / "exp2")]) == 1
    assert "Errno" not in capsys.readouterr().err


def test_validate_warns_that_a_pipe_needs_the_opt_in(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    lines = (data / "wav.scp").read_text().splitlines()
    utt, path = lines[0].split()
    lines[0] = f"{utt} sox {path} -t wav - |"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    assert main(["data", "validate", str(data)]) == 0  # a warning, not an error
    out = capsys.readouterr()
    text = out.out + out.err
    warning = [line for line in text.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1 and f"'{utt}'" in warning[0] and "--allow-pipes" in warning[0]


def test_transcribe_pipe_refusal_names_the_utterance(toy_asr_model, tmp_path, capsys):
    data = toy_asr_model.parent.parent / "data"
    scp = tmp_path / "wav.scp"
    first = (data / "wav.scp").read_text().splitlines()[0]
    utt, path = first.split()
    shutil.copy(data / path if not Path(path).is_absolute() else path, tmp_path / "a.wav")
    scp.write_text(f"{utt} cat {tmp_path / 'a.wav'} |\n")
    assert main(["transcribe", "--model", str(toy_asr_model), str(scp)]) == 1
    err = capsys.readouterr().err
    assert f"utterance '{utt}'" in err and "--allow-pipes" in err and "Traceback" not in err
