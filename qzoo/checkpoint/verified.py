"""The one verified way to read a trained Q-network, for every command that loads one (eval, record, report,
export, bench): model files against the checksum they carry, checkpoints against their manifest."""

from __future__ import annotations

from pathlib import Path

from qzoo.checkpoint.models import load, payload_digest
from qzoo.checkpoint.periodic import verify
from qzoo.checkpoint.rundir import BEST_FILE, CHECKPOINT_FILE, MODEL_FILE, checkpoint_names, checkpoint_steps
from qzoo.config import ConfigError


def load_model(path: Path, which: str = "final", out=None) -> tuple[dict, Path]:
    """``(payload, file)`` from a run directory or a model / checkpoint file.

    - a run directory: ``best`` reads best_model.pt; ``final`` reads model.pt, or, when the run has none (stopped,
      killed), the newest checkpoint that verifies, naming on ``out`` each newer one it skipped and why;
    - model.pt / best_model.pt are checked against the checksum they carry (:func:`payload_digest`; files written
      before model files carried one load unchecked); a ``checkpoints/step_N.pt`` against its manifest.

    A file that fails is refused: ConfigError, one line naming the file and what is wrong."""
    path = Path(path)
    if path.is_file():
        return _load_verified(path), path
    if not path.is_dir():
        raise ConfigError(f"run directory '{path}' does not exist")
    model = path / (BEST_FILE if which == "best" else MODEL_FILE)
    if model.is_file() or which == "best":
        if not model.is_file():
            raise ConfigError(f"'{path}' has no {BEST_FILE} (no evaluation finished yet); use --model final")
        return _load_verified(model), model
    directory = path / "checkpoints"
    skipped = []
    for step in checkpoint_steps(directory)[::-1]:
        pt = directory / checkpoint_names(step)[0]
        try:
            payload = _load_verified(pt)
        except ConfigError as e:
            skipped.append(f"step_{step}: {e}")
            continue
        if skipped and out is not None:
            print(f"qzoo: {path.name} has no {MODEL_FILE}: reading checkpoints/{pt.name}; skipped "
                  + "; skipped ".join(skipped), file=out, flush=True)
        return payload, pt
    if skipped:
        raise ConfigError(f"'{path}' has no {MODEL_FILE} and no intact checkpoint ({'; '.join(skipped)})")
    raise ConfigError(f"'{path}' holds no model ({MODEL_FILE}, {BEST_FILE} or checkpoints/step_*.pt)")


def _load_verified(path: Path) -> dict:
    """One model file or checkpoint, verified (see :func:`load_model`); ConfigError naming ``path`` otherwise."""
    if (m := CHECKPOINT_FILE.fullmatch(path.name)) and m.group(2) == "pt":
        problem = verify(path.parent, int(m.group(1)))
        if problem is not None:
            raise ConfigError(f"checkpoint '{path}' is refused: {problem}")
        return load(path)
    payload = load(path)
    if "sha256" in payload and payload_digest(payload) != payload["sha256"]:
        raise ConfigError(f"'{path}' does not match the checksum it was saved with (corrupted); it is refused")
    return payload
