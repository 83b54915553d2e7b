"""Where a run's settings come from, later wins::

    Config defaults  <  preset (qzoo/presets/<algo>.yml: ``default`` entry, then the env id's entry)
                     <  --preset FILE  <  dedicated CLI flags (--seed, --total-timesteps, ...)  <  --set key=value

``--preset NAME`` (a name from :func:`named_presets`, e.g. ``rl-zoo``) instead swaps the built-in table for
qzoo/presets/NAME/<algo>.yml, in the same format and layered the same way; a name from
:func:`named_preset_files` (``course``) is a preset file shipped in qzoo/presets/named/. Presets are in RL Zoo's
hyperparams/*.yml format, so a tuned RL Zoo entry carries over unchanged.

:func:`resolve` layers them and hands the result to :func:`qzoo.config.from_dict`, which checks every value.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from qzoo.config import ALGOS, FIELDS, Config, ConfigError, from_dict, unknown_key_message

PRESET_DIR = Path(__file__).parent / "presets"
NAMED_PRESET_DIR = PRESET_DIR / "named"  # `--preset NAME` (no such file): qzoo/presets/named/NAME.yml

# RL Zoo keys that map onto qzoo settings.
_POLICIES = {"MlpPolicy": "mlp", "CnnPolicy": "nature_cnn"}
_RLZOO_IGNORED = {"n_envs_eval"}


def _parse_policy_kwargs(text: str, where: str) -> dict:
    """Parse RL Zoo's ``"dict(net_arch=[256, 256])"`` safely (a literal, never ``eval``)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
                and not node.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        value = ast.literal_eval(node)
        if isinstance(value, dict):
            return value
    except (SyntaxError, ValueError):
        pass
    raise ConfigError(f"{where}: policy_kwargs must be a literal like \"dict(net_arch=[256, 256])\", got {text!r}")


def normalise_preset_entry(entry: dict, where: str) -> dict:
    """Translate one RL Zoo style entry (policy, policy_kwargs, ...) into qzoo setting names."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(entry).__name__}")
    out: dict = {}
    for key, value in entry.items():
        if key in _RLZOO_IGNORED:
            continue
        if key == "policy":
            if value not in _POLICIES:
                raise ConfigError(f"{where}: policy must be one of {', '.join(_POLICIES)}, got {value!r}")
            out["network"] = _POLICIES[value]
        elif key == "learning_rate" and isinstance(value, str) and value.startswith("lin_"):
            out["learning_rate"], out["learning_rate_schedule"] = value[len("lin_"):], "linear"  # RL Zoo's syntax
        elif key == "policy_kwargs":
            kwargs = _parse_policy_kwargs(value, where) if isinstance(value, str) else value
            for k, v in (kwargs or {}).items():
                if k != "net_arch":
                    raise ConfigError(f"{where}: policy_kwargs key '{k}' is not supported (allowed: net_arch)")
                out["net_arch"] = v
        else:
            if key not in FIELDS:
                raise ConfigError(f"{where}: {unknown_key_message(key)}")
            out[key] = value
    return out


def load_yaml(path: Path, what: str = "preset file") -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} '{path}' is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not a text file (not UTF-8); expected a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{what} '{path}' cannot be read ({e.strerror or type(e).__name__})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{what} '{path}' is not valid YAML{at}") from None


def named_presets() -> dict[str, list[str]]:
    """Named preset tables shipped with qzoo (``--preset NAME``): name -> the algos it has a table for."""
    return {d.name: sorted(p.stem for p in d.glob("*.yml")) for d in sorted(PRESET_DIR.iterdir())
            if d.is_dir() and d != NAMED_PRESET_DIR}


def is_preset_name(text: str) -> bool:
    """A --preset value naming a shipped table rather than a file: no path separator, no .yml/.yaml suffix, and
    no file of that name here."""
    return "/" not in text and not text.endswith((".yml", ".yaml")) and not Path(text).exists() \
        and text in named_presets()


def preset_values(algo: str, env_id: str, name: str | None = None) -> dict:
    """Built-in preset for (algo, env_id): the ``default`` entry, overlaid with the ``atari`` entry for ALE
    ids (``minatar`` for MinAtar ids), overlaid with the env id's own entry (default < atari/minatar < env id).
    ``name``: read the named table qzoo/presets/NAME/<algo>.yml instead, which must have an entry for the env."""
    from qzoo.env_ids import is_atari_id, is_minatar_id  # imported here: ale-py loads in ~0.3 s (`qzoo --help`)

    where = f"{algo}.yml" if name is None else f"{name}/{algo}.yml"
    if name is not None and algo not in named_presets().get(name, []):
        raise ConfigError(f"preset '{name}' has no {algo} settings (it has: {', '.join(named_presets()[name])}); "
                          f"--algo {algo} uses the built-in preset")
    table = load_yaml(PRESET_DIR / where) or {}
    family = ["atari"] if is_atari_id(env_id) else (["minatar"] if is_minatar_id(env_id) else [])
    groups = [g for g in ["default"] + family + [env_id] if g in table]
    if name is not None and not groups:
        raise ConfigError(f"preset '{name}' has no entry for '{env_id}' (it has: {', '.join(map(str, table))})")
    values: dict = {}
    for group in groups:
        values.update(normalise_preset_entry(table[group], f"preset {where}:{group}"))
    return values


def named_preset_files() -> list[str]:
    """The preset files shipped in qzoo/presets/named/, by name (``--preset course``)."""
    return sorted(p.stem for p in NAMED_PRESET_DIR.glob("*.yml"))


def preset_path(path: str | Path) -> Path:
    """``--preset``'s file: the path itself, or a shipped preset when given a bare name that is no file."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        named = NAMED_PRESET_DIR / f"{path}.yml"
        if named.is_file():
            return named
        raise ConfigError(f"--preset '{path}' is neither a file nor a named preset (named: "
                          f"{', '.join(sorted(named_preset_files() + list(named_presets())))})")
    return path


def preset_file_values(path: str | Path, env_id: str) -> dict:
    """A user preset file: either RL Zoo's format (keyed by env id) or a flat mapping of settings; a bare name
    that is no file names a shipped preset (qzoo/presets/named/NAME.yml)."""
    path = preset_path(path)
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset file '{path}' must hold a mapping of settings")
    if env_id in data and isinstance(data[env_id], dict):
        return normalise_preset_entry(data[env_id], f"{path}:{env_id}")
    if all(isinstance(v, dict) for v in data.values()) and not any(k in FIELDS for k in data):
        raise ConfigError(f"preset file '{path}' has no entry for '{env_id}' (it has: {', '.join(map(str, data))})")
    return normalise_preset_entry(data, str(path))


def parse_set(items: list[str]) -> dict:
    """``["learning_rate=1e-3", "double=true"]`` -> ``{"learning_rate": "1e-3", "double": "true"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in FIELDS:
            raise ConfigError(unknown_key_message(key))
        out[key] = value.strip()
    return out


def resolve(env_id: str, algo: str = "dqn", preset_file: str | None = None, flags: dict | None = None,
            sets: list[str] | None = None) -> Config:
    """defaults < built-in preset < preset file < CLI flags < --set; validated. A ``preset_file`` that names a
    shipped table (``rl-zoo``) replaces the built-in preset instead."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm '{algo}'; allowed: {', '.join(ALGOS)}")
    if preset_file and "/" not in preset_file and not preset_file.endswith((".yml", ".yaml")) \
            and not Path(preset_file).exists() and not is_preset_name(preset_file) \
            and preset_file not in named_preset_files():
        raise ConfigError(f"--preset '{preset_file}' is neither a file nor a named preset (named: "
                          f"{', '.join(sorted(named_preset_files() + list(named_presets())))})")
    if preset_file and is_preset_name(preset_file):
        values: dict = preset_values(algo, env_id, preset_file)
    else:
        values = preset_values(algo, env_id)
        if preset_file:
            values.update(preset_file_values(preset_file, env_id))
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    overrides = parse_set(sets or [])
    for key, where in (("env_id", "the ENV_ID argument"), ("algo", "--algo")):
        if key in overrides:
            raise ConfigError(f"setting '{key}' cannot be given with --set; use {where}")
    values.update(overrides)
    values["env_id"], values["algo"] = env_id, algo
    return from_dict(values)
