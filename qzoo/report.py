"""``qzoo report``: one self-contained HTML page per run (opens offline: images and video are embedded).

The page shows the learning curves (evaluation and training return), the evaluation table (raw scores, and
human-normalised ones for Atari), a video of the agent, the settings (those that differ from the defaults
first) and the command that reproduces the run. A small script records the video's state in
``data-*`` attributes of ``#video-status`` (ready state, duration, whether the browser can play it), which is
what a headless browser test reads back.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path

from qzoo import checkpoint as ckpt
from qzoo.config import Config, ConfigError

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.changed td { font-weight: 600; } pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; }
img.curve { max-width: 100%; border: 1px solid #eee; } video { border: 1px solid #ccc; background: #000; }
"""

_SCRIPT = """
const v = document.getElementById('agent-video'), s = document.getElementById('video-status');
function note() {
  s.dataset.readyState = v.readyState; s.dataset.duration = v.duration;
  s.dataset.canPlay = v.canPlayType(v.querySelector('source').type);
  s.dataset.canPlayH264 = v.canPlayType('video/mp4; codecs="avc1.42E01E"');
  s.dataset.width = v.videoWidth; s.dataset.height = v.videoHeight;
  s.textContent = isFinite(v.duration) ? `${v.duration.toFixed(1)} s, ${v.videoWidth}x${v.videoHeight}` : '';
}
v.addEventListener('loadedmetadata', note); v.addEventListener('canplay', note);
v.addEventListener('error', () => { s.dataset.error = v.error ? v.error.code : 'source'; note(); });
note();
"""


def _figure_png(run, metric: str) -> bytes | None:
    from qzoo.plotting import METRICS, curves, plot_curves

    try:
        curve_list = curves([run], metric)
    except ConfigError:  # nothing logged for this metric yet
        return None
    fig = plot_curves(curve_list, ylabel=METRICS[metric][2], references=metric == "eval", title=None,
                      size=(7.0, 4.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _settings_rows(config: Config) -> str:
    defaults = Config().to_dict()
    values = config.to_dict()
    names = sorted(values, key=lambda k: (values[k] == defaults[k], list(values).index(k)))
    help_of = {f.name: f.metadata["help"] for f in dataclasses.fields(Config)}
    rows = []
    for name in names:
        changed = values[name] != defaults[name]
        rows.append(f"<tr{' class=changed' * changed}><td>{html.escape(name)}</td>"
                    f"<td>{html.escape(repr(values[name]))}</td><td>{html.escape(repr(defaults[name]))}</td>"
                    f"<td>{html.escape(help_of[name])}</td></tr>")
    return "\n".join(rows)


def _eval_rows(run, game: str | None) -> str:
    from qzoo.evaluation import human_normalized

    table = run.columns.get("evaluations.csv", {})
    rows = []
    for i in range(len(table.get("step", []))):
        mean, std = table["return_mean"][i], table["return_std"][i]
        hns = human_normalized(game, mean) if game else None
        rows.append(f"<tr><td class=num>{int(table['step'][i])}</td><td class=num>{mean:.2f}</td>"
                    f"<td class=num>{std:.2f}</td><td class=num>{table['length_mean'][i]:.1f}</td>"
                    f"<td class=num>{int(table['episodes'][i])}</td>"
                    + (f"<td class=num>{'—' if hns is None else f'{hns:.1%}'}</td>" if game else "") + "</tr>")
    return "\n".join(rows)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def build_report(run_dir: str | Path, output: str | Path | None = None, *, video: str | Path | None = None,
                 record_video: bool = True, seed: int = 0) -> Path:
    """Write the report of ``run_dir`` to ``output`` (default ``<run_dir>/report.html``). The video is ``video``
    if given, else ``<run_dir>/video.mp4``, recorded first (one evaluation episode) when missing and
    ``record_video``."""
    from qzoo.env_ids import atari_game, is_atari_id
    from qzoo.envs import render_problem
    from qzoo.plotting import load_run

    run_dir = Path(run_dir)
    config = ckpt.read_config(run_dir)
    run = load_run(run_dir)
    game = atari_game(config.env_id) if is_atari_id(config.env_id) else None
    output = run_dir / "report.html" if output is None else Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report file '{output}' must end in .html")

    video_path = Path(video) if video is not None else run_dir / "video.mp4"
    if video is not None and not video_path.is_file():
        raise ConfigError(f"video file '{video_path}' does not exist")
    no_frames = None if video_path.is_file() or not record_video else render_problem(config.env_id)
    if not video_path.is_file() and record_video and no_frames is None:
        from qzoo.video import record_run

        record_run(run_dir, video_path, seed=seed)

    parts = [f"<h1>{html.escape(config.algo)} on {html.escape(config.env_id)}</h1>",
             f"<p>Run directory <code>{html.escape(str(run_dir))}</code>, seed {config.seed}, "
             f"{config.n_timesteps} environment steps planned.</p>", "<h2>Learning curves</h2>"]
    second = ("score", "training game score") if game else ("train", "training episode return")
    for metric, alt in (("eval", "evaluation return"), second):
        png = _figure_png(run, metric)
        if png is not None:
            parts.append(f'<img class=curve id="curve-{metric}" alt="{alt} against environment steps" '
                         f'src="{_data_uri("image/png", png)}">')
    score = "game score (whole games, unclipped)" if game else "return"
    parts += ["<h2>Evaluation</h2>",
              f"<p>Greedy evaluations during training (epsilon {config.eval_epsilon}, {config.eval_episodes} "
              f"episode{'s' * (config.eval_episodes > 1)} each); the {score} of each episode.</p>",
              "<table id=eval-table><tr><th>step</th><th>mean " + html.escape(score.split(' (')[0]) + "</th>"
              "<th>std</th><th>mean length</th><th>episodes</th>"
              + ("<th>human-normalised</th>" if game else "") + "</tr>", _eval_rows(run, game), "</table>"]
    if game:
        parts.append("<p>Human-normalised score = (score − random) / (human − random), with the random and human "
                     "scores of the standard 57-game table.</p>")
    if video_path.is_file():
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(video_path))
        width = next(reader)["size"][0]
        reader.close()
        scale = 2 if width < 320 else 1  # Atari's 160-pixel screen, shown at twice its size with sharp pixels
        uri = _data_uri("video/mp4", video_path.read_bytes())
        parts += ["<h2>Video</h2>", f"<video id=agent-video width={width * scale} controls muted playsinline "
                  "preload=auto style='image-rendering: pixelated'>",
                  f'<source src="{uri}" type="video/mp4">', "</video>",
                  "<p id=video-status></p>", f"<script>{_SCRIPT}</script>"]
    elif no_frames is not None:
        parts += ["<h2>Video</h2>", f"<p id=no-video>No video: {html.escape(no_frames)}.</p>"]
    command = (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").is_file() else ""
    parts += ["<h2>Reproduce</h2>", f"<pre id=command>{html.escape(command or '(no command.txt)')}</pre>",
              f"<p>Evaluate: <code>qzoo eval {html.escape(str(run_dir))}</code></p>",
              "<h2>Settings</h2><p>Settings that differ from the defaults are in bold.</p>",
              "<table id=settings><tr><th>setting</th><th>value</th><th>default</th><th>meaning</th></tr>",
              _settings_rows(config), "</table>"]
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>qzoo report: "
            f"{html.escape(config.algo)} {html.escape(config.env_id)}</title><style>{_STYLE}</style></head>\n"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_bytes(output, page.encode())
    return output

