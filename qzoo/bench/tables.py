"""Results tables of a benchmark suite: ``results.csv`` (one row per run), ``summary.csv`` (one row per env and
algo) and ``results.md`` (per seed, then mean ± std per env and algo, with the published anchor beside it; with a
peer, speed side by side).

Conventions: the score is the final model's mean evaluation return (``final_eval``); ``train_return`` is the mean
return of the last training episodes (what curve-reading papers such as MinAtar's report); the spread is the sample
standard deviation over seeds (ddof 1; 0 for a single seed); steps/s is the training loop's (evaluation excluded).

Atari games with published human and random scores also get an aggregate (:func:`iqm_rows`): per algo, the IQM
of human-normalised final scores pooled over runs x games with a 95% stratified-bootstrap CI (rliable's,
qzoo.plotting), beside the IQM of each published anchor's per-game scores on the same games, and how many of those
games the algo's mean beats the anchor on. Only anchors that state their budget (``steps``) and match the runs' budget
on every game enter it (a 10M-step score is no yardstick for a 100k-step run). The anchors are one mean per game, so
their IQM is over games only (the papers' own IQMs pool their runs and differ somewhat).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

CSV_COLUMNS = ["env", "algo", "seed", "n_timesteps", "final_eval", "final_eval_std", "best_eval", "train_return",
               "steps_per_s", "seconds", "run_dir"]
SUMMARY_COLUMNS = ["env", "algo", "n_timesteps", "seeds", "mean", "std", "train_return", "steps_per_s", "anchor",
                   "anchor_source", "threshold", "solved"]


def load_anchors() -> dict:
    """The published scores the tables compare with (qzoo/presets/anchors.yml): env id -> algo -> score, source and
    budget (``steps``), plus the env's "solved" ``threshold`` where there is one."""
    from qzoo.resolve import PRESET_DIR, load_yaml

    return load_yaml(PRESET_DIR / "anchors.yml") or {}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _order(results: list[dict]) -> tuple[list[str], list[str]]:
    envs, algos = [], []
    for r in results:
        envs += [r["env"]] if r["env"] not in envs else []
        algos += [r["algo"]] if r["algo"] not in algos else []
    return envs, algos


def summarize(results: list[dict], anchors: dict) -> list[dict]:
    """One row per (env, algo), in first-seen order: seeds, per-seed scores (by seed), mean, std, mean training
    return, mean steps/s, the anchor for that algo (the peer's is DQN's) and how many seeds reach the threshold."""
    envs, algos = _order(results)
    rows = []
    for env in envs:
        for algo in algos:
            runs = sorted((r for r in results if r["env"] == env and r["algo"] == algo), key=lambda r: r["seed"])
            if not runs:
                continue
            finals = [float(r["final_eval"]) for r in runs]
            mean, std = mean_std(finals)
            train = [float(r["train_return"]) for r in runs if r.get("train_return") is not None]
            anchor = (anchors.get(env) or {}).get("dqn" if algo == "sb3-dqn" else algo)
            threshold = (anchors.get(env) or {}).get("threshold")
            rows.append({"env": env, "algo": algo, "seeds": [r["seed"] for r in runs], "finals": finals, "mean": mean,
                         "std": std, "train_return": sum(train) / len(train) if train else None,
                         "steps_per_s": sum(float(r["steps_per_s"]) for r in runs) / len(runs),
                         "n_timesteps": runs[0]["n_timesteps"], "anchor": anchor, "threshold": threshold,
                         "solved": None if threshold is None else sum(f >= threshold for f in finals)})
    return rows


def human_normalized_score(env_id: str, score: float) -> float | None:
    """``score`` human-normalised for an ale-py Atari id (``ALE/MsPacman-v5``, ``PongNoFrameskip-v4``); None for
    any other env (MinAtar's Breakout is not Atari's) or a game without published human and random scores."""
    from qzoo.env_ids import atari_game, is_atari_id
    from qzoo.evaluation import human_normalized

    return human_normalized(atari_game(env_id), score) if is_atari_id(env_id) else None


def iqm_rows(summary: list[dict], anchors: dict, n_boot: int = 2000, interval: float = 0.95) -> list[dict]:
    """Per algo with Atari results: IQM of human-normalised scores [``interval`` CI] over its games, and per anchor algo
    published for every one of those games at the runs' budget (the anchor's ``steps``), the anchors' IQM and the games
    where the algo's mean beats them.
    Every game contributes the same number of runs (its first seeds, as many as the game with the fewest),
    as the stratified bootstrap needs. With one run per game there is nothing to resample within a game (every
    resample is the runs themselves): ``low`` and ``high`` are then None, not a zero-width interval."""
    from qzoo.plotting import iqm, stratified_bootstrap_ci

    rows = []
    for algo in dict.fromkeys(r["algo"] for r in summary):
        games = [r for r in summary if r["algo"] == algo and human_normalized_score(r["env"], 0.0) is not None]
        if not games:
            continue
        n_runs = min(len(r["finals"]) for r in games)
        scores = np.array([[human_normalized_score(r["env"], f) for f in r["finals"][:n_runs]] for r in games]).T
        if n_runs < 2:
            point, low, high = iqm(scores), None, None
        else:
            point, low, high = stratified_bootstrap_ci(scores, n_boot=n_boot, interval=interval)
        row = {"algo": algo, "games": len(games), "runs_per_game": n_runs, "iqm": point, "low": low, "high": high,
               "anchors": {}}
        anchor_algos = dict.fromkeys(a for r in games for a in (anchors.get(r["env"]) or {}) if a != "threshold")
        for a in anchor_algos:
            published = [(anchors.get(r["env"]) or {}).get(a) for r in games]
            if any(p is None or p.get("steps") != r["n_timesteps"] for r, p in zip(games, published, strict=True)):
                continue  # an anchor counts only where it covers every game of the row, at the same budget
            pairs = zip(games, published, strict=True)
            hns = np.array([[human_normalized_score(r["env"], p["score"]) for r, p in pairs]])
            beats = sum(r["mean"] > p["score"] for r, p in zip(games, published, strict=True))
            row["anchors"][a] = {"iqm": iqm(hns), "beats": beats}
        rows.append(row)
    return rows


def ci_text(row: dict) -> str:
    """An :func:`iqm_rows` row's interval as printed: '[low, high]', or why there is none."""
    if row["low"] is None:
        return "(no CI: one run per game)"
    return f"[{row['low']:.3f}, {row['high']:.3f}]"


def speed_rows(summary: list[dict], peer_algo: str = "sb3-dqn", algo: str = "dqn") -> list[dict]:
    """Per env with both qzoo ``algo`` and the peer: their mean scores, steps/s and the speed ratio qzoo / peer."""
    by = {(r["env"], r["algo"]): r for r in summary}
    rows = []
    for (env, a), q in by.items():
        p = by.get((env, peer_algo))
        if a == algo and p is not None:
            rows.append({"env": env, "qzoo_mean": q["mean"], "qzoo_std": q["std"], "peer_mean": p["mean"],
                         "peer_std": p["std"], "qzoo_steps_per_s": q["steps_per_s"],
                         "peer_steps_per_s": p["steps_per_s"], "ratio": q["steps_per_s"] / p["steps_per_s"]})
    return rows


def _num(x, fmt: str = ".1f") -> str:
    return "" if x is None else format(x, fmt)


def markdown(summary: list[dict], description: str = "", anchors: dict | None = None) -> str:
    lines = []
    if description:
        lines += [description, ""]
    lines += ["| env | algo | steps | per-seed final eval | mean ± std | train return | steps/s | published | solved |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        anchor = r["anchor"]
        published = f"{anchor['score']:g} ({anchor['source']})" if anchor else ""
        solved = "" if r["threshold"] is None else f"{r['solved']}/{len(r['finals'])} (≥ {r['threshold']:g})"
        lines.append(f"| {r['env']} | {r['algo']} | {r['n_timesteps']:,} | {', '.join(_num(f) for f in r['finals'])} "
                     f"| {r['mean']:.1f} ± {r['std']:.1f} | {_num(r['train_return'])} | {r['steps_per_s']:.0f} "
                     f"| {published} | {solved} |")
    aggregate = iqm_rows(summary, anchors or {})
    if aggregate:
        lines += ["", "Atari: IQM of human-normalised final scores, runs x games pooled, with a 95% "
                  "stratified-bootstrap CI; beside it, the IQM of each published anchor's per-game scores on the same "
                  "games at the same budget, and on how many of them this algo's mean is higher:", "",
                  "| algo | games | runs/game | IQM [95% CI] | published IQM (same games) | games above published |",
                  "|---|---|---|---|---|---|"]
        for a in aggregate:
            published = "; ".join(f"{k} {v['iqm']:.3f}" for k, v in a["anchors"].items())
            above = "; ".join(f"{k} {v['beats']}/{a['games']}" for k, v in a["anchors"].items())
            lines.append(f"| {a['algo']} | {a['games']} | {a['runs_per_game']} | {a['iqm']:.3f} {ci_text(a)} "
                         f"| {published} | {above} |")
    speed = speed_rows(summary)
    if speed:
        lines += ["", "qzoo DQN beside stable-baselines3's DQN (same env, settings and seeds):", "",
                  "| env | qzoo dqn | sb3 dqn | qzoo steps/s | sb3 steps/s | speed ratio |",
                  "|---|---|---|---|---|---|"]
        for s in speed:
            lines.append(f"| {s['env']} | {s['qzoo_mean']:.1f} ± {s['qzoo_std']:.1f} | {s['peer_mean']:.1f} ± "
                         f"{s['peer_std']:.1f} | {s['qzoo_steps_per_s']:.0f} | {s['peer_steps_per_s']:.0f} "
                         f"| {s['ratio']:.2f}× |")
    return "\n".join(lines) + "\n"


def write_tables(suite_dir: Path, results: list[dict], anchors: dict, description: str = "") -> list[dict]:
    """Write results.csv and results.md into ``suite_dir``; return the summary rows."""
    suite_dir = Path(suite_dir)
    with open(suite_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in sorted(results, key=lambda r: (r["env"], r["algo"], r["seed"])):
            writer.writerow(r)
    summary = summarize(results, anchors)
    with open(suite_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, SUMMARY_COLUMNS)
        writer.writeheader()
        for r in summary:
            anchor = r["anchor"] or {}
            writer.writerow({**{k: r[k] for k in ("env", "algo", "n_timesteps", "mean", "std", "train_return",
                                                  "steps_per_s", "threshold", "solved")},
                             "seeds": len(r["finals"]), "anchor": anchor.get("score"),
                             "anchor_source": anchor.get("source")})
    (suite_dir / "results.md").write_text(markdown(summary, description, anchors))
    return summary
