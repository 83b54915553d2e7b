"""Every command that loads a model verifies it (checkpoint.load_model): a damaged newest checkpoint is skipped for
the newest intact one and named; a damaged model.pt / best_model.pt is refused in one line naming the file."""

import shutil
import zipfile
from pathlib import Path

import pytest

from qzoo.cli import main


def sets(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def qzoo(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 600-step CartPole run: model.pt, best_model.pt, checkpoints at 200, 400 and 600."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "CartPole-v1", "-n", "600", "--seed", "0", "--runs-dir", str(runs), "--quiet"] + sets(
        "learning_starts=100", "log_interval=100", "eval_freq=300", "eval_episodes=1", "checkpoint_freq=200",
        "keep_checkpoints=3", "tensorboard=false", "save_replay=false", "net_arch=[16]", "train_freq=4")) == 0
    (config,) = runs.rglob("config.yaml")
    return config.parent


def flip_tensor_byte(path: Path) -> None:
    """Flip one byte inside the largest tensor's data (torch.load still reads such a file)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    local_extra = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename.encode()) + local_extra
    data[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def commands(run: Path, tmp: Path, which: str = "final") -> dict[str, list]:
    return {
        "eval": ["eval", run, "--episodes", 1, "--model", which],
        "record": ["record", run, "--model", which, "-o", tmp / "r.mp4"],
        "report": ["report", run, "-o", tmp / "report.html"] if which == "final" else None,
        "export": ["export", run, tmp / "export", "--model", which, "--episodes", 1, "--no-video"],
    }


DAMAGE = {"flipped tensor byte": flip_tensor_byte, "truncated": truncate, "manifest dropped": None}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_skipped_by_every_loading_command(finished, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "model.pt").unlink()  # a run stopped before its end: the commands read its checkpoints
    newest = run / "checkpoints" / "step_600.pt"
    if DAMAGE[damage] is None:
        (run / "checkpoints" / "step_600.json").unlink()
        why = "no manifest"
    else:
        DAMAGE[damage](newest)
        why = "does not match its sha256 checksum" if damage.startswith("flipped") else "(truncated?)"
    for name, args in commands(run, tmp_path).items():
        code, err = qzoo(capsys, *args)
        assert code == 0, (name, err)
        assert "reading checkpoints/step_400.pt; skipped step_600: " in err and why in err, (name, err)
    assert "step_400.pt" in (tmp_path / "export" / "results.json").read_text()


@pytest.mark.parametrize("which,file", [("final", "model.pt"), ("best", "best_model.pt")])
@pytest.mark.parametrize("damage", ["flipped tensor byte", "truncated"])
def test_a_damaged_model_file_is_refused_in_one_line_naming_it(finished, tmp_path, capsys, which, file, damage):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    DAMAGE[damage](run / file)
    for name, args in commands(run, tmp_path, which).items():
        if args is None:
            continue
        code, err = qzoo(capsys, *args)
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert f"{run / file}'" in err, (name, err)
        assert ("does not match the checksum it was saved with" if damage.startswith("flipped")
                else "is not a readable qzoo model") in err, (name, err)
    assert not (tmp_path / "export").exists() and not (tmp_path / "r.mp4").exists()


def test_a_damaged_checkpoint_given_by_name_is_refused_and_no_intact_one_is_refused(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    flip_tensor_byte(run / "checkpoints" / "step_400.pt")
    code, err = qzoo(capsys, "eval", run / "checkpoints" / "step_400.pt", "--episodes", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"checkpoint '{run / 'checkpoints' / 'step_400.pt'}' is refused: step_400.pt does not match its" in err
    (run / "model.pt").unlink()
    for step in (200, 600):
        (run / "checkpoints" / f"step_{step}.json").unlink()
    code, err = qzoo(capsys, "eval", run, "--episodes", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "has no model.pt and no intact checkpoint (step_600: " in err and "step_200: " in err
