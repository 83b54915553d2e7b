"""``qzoo export``: a folder ready to publish on a model hub, which ``qzoo eval`` / ``qzoo record`` load as is.

    README.md           model card: YAML front matter (library_name, tags, model-index with the evaluation, as
                        Hugging Face model cards have it) and the settings, scores and usage in prose
    config.yaml         the run's resolved settings
    model.safetensors   the Q-network's weights (deep agents) or the Q-table as tensor ``q_table`` (qlearning);
                        its metadata holds the format, env id, algo, observation shape and action count
    results.json        a fresh evaluation (per-episode returns and lengths, mean, std, human-normalised score for
                        Atari) and the run's evaluations.csv rows
    replay.mp4          one evaluation episode (``qzoo record``)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import yaml

from qzoo import checkpoint as ckpt
from qzoo.config import Config, ConfigError
from qzoo.policy import (  # noqa: F401  (the reading side of the format lives in qzoo.policy; re-exported)
    EXPORT_FORMAT,
    WEIGHTS_FILE,
    is_export,
    load_exported,
    load_policy,
)

CARD_FILE, RESULTS_FILE, VIDEO_FILE = "README.md", "results.json", "replay.mp4"


def _weights(model_path: Path, config: Config, agent) -> tuple[dict, dict]:
    """(tensors, metadata) of the agent loaded from the run's ``model_path``."""
    meta = {"format": EXPORT_FORMAT, "version": str(ckpt.FORMAT_VERSION), "env_id": config.env_id,
            "algo": config.algo}
    if config.is_tabular:
        meta.update(obs_shape="[]", n_actions=str(agent.n_actions))
        return {"q_table": torch.from_numpy(np.ascontiguousarray(agent.values))}, meta
    payload, _ = ckpt.load_model(model_path)
    meta.update(obs_shape=json.dumps(list(payload["obs_shape"])), n_actions=str(payload["n_actions"]),
                step=str(payload["step"]))
    return {k: v.detach().cpu().contiguous() for k, v in agent.q_net.state_dict().items()}, meta


def repo_id_problem(repo_id: str) -> str | None:
    """None for a model hub repository id ``user/name`` as the Hugging Face Hub takes it (its validate_repo_id): each
    part of ASCII letters, digits, '-', '_' and '.', starting and ending with a letter, digit or '_', no '--' or
    '..', the name at most 96 characters and not ending in '.git'; else what is wrong."""
    parts = repo_id.split("/")
    if len(parts) != 2:
        return "must be user/name (one '/')"
    for part in parts:
        if not re.fullmatch(r"\w(?:[\w.-]*\w)?", part, re.ASCII) or "--" in part or ".." in part:
            return (f"part {part!r} must be ASCII letters, digits, '-', '_' or '.', start and end with a letter, digit "
                    "or '_', without '--' or '..'")
    if len(parts[1]) > 96 or parts[1].endswith(".git"):
        return "the name must be at most 96 characters and not end in '.git'"
    return None


def export_run(run_dir: str | Path, out_dir: str | Path, *, which: str = "final", episodes: int = 10,
               seed: int = 0, video: bool = True, repo_id: str | None = None) -> dict:
    """Write the export folder of a run; returns the results dict (also in results.json)."""
    from safetensors.torch import save_file

    from qzoo.env_ids import atari_game, is_atari_id
    from qzoo.envs import make_eval_env, render_problem
    from qzoo.evaluation import evaluate, human_normalized
    from qzoo.plotting import read_csv_columns

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if is_export(run_dir):
        raise ConfigError(f"'{run_dir}' is already an export folder; export a run directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"output folder '{out_dir}' exists and is not empty; choose a new one")
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if repo_id is not None and (problem := repo_id_problem(repo_id)) is not None:
        raise ConfigError(f"--repo-id {repo_id!r} {problem}")
    agent, config, model_path = load_policy(run_dir, which)
    if video and (problem := render_problem(config.env_id)) is not None:  # before anything is written
        raise ConfigError(f"{problem}; export it with --no-video")
    evaluations = read_csv_columns(run_dir / "evaluations.csv")  # a log that cannot be read: refused here too
    out_dir.mkdir(parents=True, exist_ok=True)

    tensors, meta = _weights(model_path, config, agent)
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata=meta)
    (out_dir / WEIGHTS_FILE).chmod(0o644)  # safetensors creates it owner-only; this folder is for publishing
    ckpt.write_config(out_dir, config)

    env = make_eval_env(config)
    result = evaluate(agent, env, episodes, config.eval_epsilon, seed)
    env.close()
    game = atari_game(config.env_id) if is_atari_id(config.env_id) else None
    results = {
        "env_id": config.env_id, "algo": config.algo, "seed": config.seed, "model": model_path.name,
        "trained_steps": int(meta["step"]) if "step" in meta else _last_step(run_dir),
        "evaluation": {"episodes": episodes, "epsilon": config.eval_epsilon, "seed": seed,
                       "mean_return": result.mean, "std_return": result.std,
                       "returns": result.returns.tolist(), "lengths": result.lengths.tolist(),
                       "game": game, "human_normalized": human_normalized(game, result.mean) if game else None},
        "training_evaluations": {k: [None if np.isnan(x) else float(x) for x in v] for k, v in evaluations.items()},
    }
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    if video:
        from qzoo.video import record

        record(agent, config, out_dir / VIDEO_FILE, episodes=1, seed=seed)
    command = (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").is_file() else ""
    (out_dir / CARD_FILE).write_text(model_card(config, results, command, video, repo_id))
    return results


def _last_step(run_dir: Path) -> int | None:
    from qzoo.plotting import read_csv_columns

    steps = read_csv_columns(run_dir / "progress.csv").get("step")
    return int(steps[-1]) if steps is not None and len(steps) else None


def model_card(config: Config, results: dict, command: str, video: bool, repo_id: str | None = None) -> str:
    """README.md: Hugging Face style front matter (library_name, tags, model-index) and the card's prose."""
    ev = results["evaluation"]
    family = "q-learning" if config.is_tabular else "deep-q-learning"
    name = f"{config.algo}-{config.env_id.replace('/', '-')}"
    front = {
        "library_name": "qzoo",
        "tags": [config.env_id, "reinforcement-learning", "deep-reinforcement-learning", family, config.algo, "qzoo"],
        "model-index": [{"name": name, "results": [{
            "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
            "dataset": {"name": config.env_id, "type": config.env_id},
            "metrics": [{"type": "mean_reward", "value": f"{ev['mean_return']:.2f} +/- {ev['std_return']:.2f}",
                         "name": "mean_reward", "verified": False}]}]}],
    }
    hns = ev["human_normalized"]
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {config.algo} agent playing {config.env_id}", "",
        f"A {'Q-table' if config.is_tabular else 'deep Q-network'} trained with "
        f"qzoo (`qzoo train {config.env_id} --algo {config.algo}`) for {results['trained_steps']} "
        "environment steps.", "",
        "## Evaluation", "",
        "| episodes | epsilon | seed | mean return | std | human-normalised |", "|---|---|---|---|---|---|",
        f"| {ev['episodes']} | {ev['epsilon']} | {ev['seed']} | {ev['mean_return']:.2f} | {ev['std_return']:.2f} | "
        f"{'—' if hns is None else f'{hns:.1%}'} |", "",
        "Per-episode returns and the evaluations made during training are in `results.json`."
        + (" For Atari the return is the raw game score of whole games (all lives, unclipped)." if ev["game"] else ""),
        "",
    ]
    if video:
        lines += ["## Video", "", f"`{VIDEO_FILE}`: one evaluation episode.", ""]
    where = repo_id or "THIS_FOLDER"
    lines += ["## Usage", "", "With qzoo installed:", "", "```bash",
              *([f"huggingface-cli download {repo_id} --local-dir {where}"] if repo_id else []),
              f"qzoo eval {where} --episodes 10        # same numbers as above with --seed {ev['seed']}",
              f"qzoo record {where} -o video.mp4", "```", "",
              "## Training", "", "```bash", command or f"qzoo train {config.env_id} --algo {config.algo}", "```", "",
              "Every setting is in `config.yaml` (reload with `qzoo train ENV --preset config.yaml`).", ""]
    return "\n".join(lines)


def read_card_metadata(out_dir: Path) -> dict:
    """The YAML front matter of an export's README.md."""
    text = (Path(out_dir) / CARD_FILE).read_text()
    _, front, _ = text.split("---\n", 2)
    return yaml.safe_load(front)

