"""The final-score chart of an Atari suite (``scores.png``): what a suite that evaluates once, at the end, shows
better than curves of one point.

Left, per game: each algo's human-normalised final score, a bar at the mean over seeds and a dot per seed, with the
published anchors at the same budget (the anchors of ``results.md``: DER, DrQ(eps) for Atari-100k) as markers over
the game's group. Right, per algo: the IQM over its runs x games with the 95% stratified-bootstrap CI, beside the
anchors' IQM on the same games (the numbers of ``results.md``'s aggregate table, :func:`qzoo.bench.tables.iqm_rows`).
Games without published human and random scores are left out; a suite with none of them gets no chart.

``qzoo plot --final`` draws the same chart from any run directories (:func:`plot_final`): each finished run's last
evaluation, grouped by label as the curves are.
"""

from __future__ import annotations

from pathlib import Path

from qzoo.bench.tables import human_normalized_score, iqm_rows, load_anchors
from qzoo.config import ConfigError

ANCHOR_MARKERS = ("v", "^", "s", "D", "P")


def _anchor_label(anchors: dict, key: str) -> str:
    """'DER (van Hasselt et al. 2019), 100k steps, ...' -> 'DER (published)'; the key where no source says more."""
    for published in anchors.values():
        source = (published or {}).get(key, {}).get("source") if isinstance(published, dict) else None
        if source:
            return f"{source.split(' (')[0].split(',')[0]} (published)"
    return f"{key} (published)"


def _budget_anchors(anchors: dict, env: str, steps) -> dict[str, float]:
    """The anchors of ``env`` published at ``steps`` agent steps: {algo key: score}."""
    return {k: v["score"] for k, v in (anchors.get(env) or {}).items()
            if k != "threshold" and isinstance(v, dict) and v.get("steps") == steps}


def score_figure(summary: list[dict], anchors: dict, *, dpi: int = 100, interval: float = 0.95,
                 aggregate: list[dict] | None = None):
    """A matplotlib Figure of the suite's human-normalised final scores (see the module's docstring), or None when
    no row is an Atari game with published human and random scores. ``summary``: tables.summarize's rows (what
    is drawn: env, algo, finals, mean, n_timesteps); ``interval``: the IQM's confidence level; ``aggregate``: the
    rows' :func:`~qzoo.bench.tables.iqm_rows` where the caller has them already (computed here otherwise)."""
    rows = [r for r in summary if human_normalized_score(r["env"], 0.0) is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = list(dict.fromkeys(r["env"] for r in rows))
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    anchor_keys = list(dict.fromkeys(k for r in rows for k in _budget_anchors(anchors, r["env"], r["n_timesteps"])))
    colors = {a: f"C{i}" for i, a in enumerate(algos)}
    markers = {k: ANCHOR_MARKERS[i % len(ANCHOR_MARKERS)] for i, k in enumerate(anchor_keys)}
    width = 0.8 / len(algos)

    fig, (ax, ax_iqm) = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(games) + 2.5) + 3.5, 4.8), dpi=dpi,
                                     gridspec_kw={"width_ratios": [max(len(games), 2), 1.6]})
    labelled: set[tuple[str, str]] = set()
    for g, env in enumerate(games):
        for i, algo in enumerate(algos):
            row = next((r for r in rows if r["env"] == env and r["algo"] == algo), None)
            if row is None:
                continue
            x = g - 0.4 + width * (i + 0.5)
            hns = [human_normalized_score(env, f) for f in row["finals"]]
            label = None if ("algo", algo) in labelled else f"{algo} (mean; dots: seeds)"
            labelled.add(("algo", algo))
            ax.bar(x, sum(hns) / len(hns), width * 0.9, color=colors[algo], alpha=0.45, label=label)
            ax.plot([x] * len(hns), hns, "o", color=colors[algo], markersize=4, linestyle="none")
        steps = next(r["n_timesteps"] for r in rows if r["env"] == env)
        for key, score in _budget_anchors(anchors, env, steps).items():
            label = None if ("anchor", key) in labelled else _anchor_label(anchors, key)
            labelled.add(("anchor", key))
            ax.plot(g, human_normalized_score(env, score), markers[key], color="0.15", markerfacecolor="none",
                    markersize=8, linestyle="none", label=label)
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
    names = [env.split("/")[-1].rsplit("-", 1)[0] for env in games]  # ALE/MsPacman-v5 -> MsPacman
    ax.set_xticks(range(len(games)), names, rotation=30 if len(games) > 6 else 0,
                  ha="right" if len(games) > 6 else "center")
    ax.set_xlim(-0.6, len(games) - 0.4)
    ax.set_ylabel("human-normalised final score")
    ax.set_title(f"per game ({len(games)} game{'s' * (len(games) > 1)}; 0 = random, 1 = human)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)

    if aggregate is None:
        aggregate = iqm_rows(rows, anchors, interval=interval)
    for i, a in enumerate(aggregate):
        if a["low"] is None:  # one run per game: no interval to draw
            ax_iqm.plot(i, a["iqm"], "o", color=colors[a["algo"]])
        else:
            ax_iqm.errorbar(i, a["iqm"], yerr=[[a["iqm"] - a["low"]], [a["high"] - a["iqm"]]], fmt="o", capsize=5,
                            color=colors[a["algo"]])
        for j, (key, published) in enumerate(a["anchors"].items()):
            ax_iqm.plot(i + 0.15 * (j + 1), published["iqm"], markers.get(key, "x"), color="0.15",
                        markerfacecolor="none", markersize=8)
    ax_iqm.set_xticks(range(len(aggregate)),
                      [f"{a['algo']}\n{a['games']} game{'s' * (a['games'] > 1)} × {a['runs_per_game']}"
                       for a in aggregate], fontsize=8)
    ax_iqm.set_xlim(-0.5, len(aggregate) - 0.2)
    ax_iqm.set_title(f"IQM [{interval * 100:g}% CI]\n(markers: published, same games)", fontsize=9)
    ax_iqm.grid(axis="y", alpha=0.3)
    low = min([0.0] + [a["iqm"] if a["low"] is None else a["low"] for a in aggregate])
    high = max([1.0] + [a["iqm"] if a["high"] is None else a["high"] for a in aggregate]
               + [p["iqm"] for a in aggregate for p in a["anchors"].values()])
    ax_iqm.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    fig.tight_layout()
    return fig


def write_score_figure(suite_dir: Path, summary: list[dict], anchors: dict) -> Path | None:
    """``suite_dir/scores.png`` from the suite's summary rows; None (and no file) where :func:`score_figure` has
    nothing to draw."""
    fig = score_figure(summary, anchors)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    path = Path(suite_dir) / "scores.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def final_rows(runs: list) -> tuple[list[dict], list]:
    """The finished runs of ``runs`` (qzoo.plotting.Run) as :func:`score_figure`'s rows, one per (env, label) in
    first-seen order, seeds sorted: a run counts when its evaluations.csv has a row at its budget (n_timesteps; the
    last evaluation, taken at the end). Returns (rows, the runs left out: not finished or never evaluated)."""
    finished, left_out = {}, []
    for run in runs:
        steps, values = run.series("eval")
        if len(steps) and steps[-1] >= run.n_timesteps:
            finished.setdefault((run.env_id, run.label), []).append((run.seed, float(values[-1]), run.n_timesteps))
        else:
            left_out.append(run)
    rows = []
    for (env, label), group in finished.items():
        group.sort(key=lambda g: g[0])
        finals = [f for _, f, _ in group]
        budgets = {n for _, _, n in group}
        if len(budgets) > 1:
            budgets_text = ", ".join(map(str, sorted(budgets)))
            raise ConfigError(f"the runs of '{label}' on {env} have different budgets ({budgets_text} steps); give "
                              "each budget its own label (LABEL=PATH)")
        rows.append({"env": env, "algo": label, "seeds": [s for s, _, _ in group], "finals": finals,
                     "mean": sum(finals) / len(finals), "n_timesteps": budgets.pop()})
    return rows, left_out


def plot_final(targets: list[str], output, *, env_id: str | None = None, references: bool = True,
               interval: float = 0.95) -> tuple[Path, list[dict], list, list[dict]]:
    """``qzoo plot --final``: the final-score chart of the finished Atari runs found in ``targets`` (run directories
    or folders of runs, ``LABEL=PATH`` as for the curves), with the published anchors at the runs' budget unless
    ``references`` is off. Returns (path, rows, runs left out, IQM rows). A run of a game without published human and
    random scores, or no finished run, is a ConfigError (nothing written)."""
    from qzoo.plotting import check_output, find_runs, save_figure

    check_output(output)
    runs = find_runs(targets, env_id)
    for run in runs:
        if human_normalized_score(run.env_id, 0.0) is None:
            raise ConfigError(f"'{run.path}': --final draws human-normalised Atari scores and {run.env_id} has no "
                              "published human and random scores; plot its curve instead (without --final)")
    rows, left_out = final_rows(runs)
    if not rows:
        raise ConfigError(f"none of the {len(runs)} run(s) found has its final evaluation yet (a row at n_timesteps "
                          "in evaluations.csv)")
    anchors = load_anchors() if references else {}
    aggregate = iqm_rows(rows, anchors, interval=interval)
    fig = score_figure(rows, anchors, interval=interval, aggregate=aggregate)
    return save_figure(fig, output), rows, left_out, aggregate
