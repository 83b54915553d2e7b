"""qzoo.native: the compiled MLP update loop is found where the setup built it, and can be turned off."""

import shutil
import subprocess
import sys

import qzoo.native as native


def test_the_setup_built_the_compiled_loop_and_training_finds_it():
    assert native.library().is_file(), "scripts/setup.sh runs `python -m qzoo.native`; the library is missing"
    assert native.load() is not None and hasattr(native.load(), "mlp_phase")
    assert native.describe().startswith("the compiled kernels are built")
    assert {"mlp_phase", "centered_rmsprop", "conv3x3_weight_grad"} <= set(dir(native.load()))
    out = subprocess.run([sys.executable, "-m", "qzoo.native"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "already built" in out.stdout  # building again compiles nothing


def test_qzoo_native_0_keeps_the_python_loop(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert native.load() is None
    assert "are off (QZOO_NATIVE=0)" in native.describe()


def test_the_library_is_keyed_by_source_and_torch_version(monkeypatch, tmp_path):
    """A changed source or another torch version names another library, so a stale build is never loaded."""
    before = native.module_name()
    monkeypatch.setattr(native.torch, "__version__", "0.0.0-test")
    assert native.module_name() != before
    monkeypatch.undo()
    sources = tmp_path / "csrc"
    shutil.copytree(native.SOURCE_DIR, sources)
    monkeypatch.setattr(native, "SOURCE_DIR", sources)
    assert native.module_name() == before  # (the same files elsewhere)
    (sources / "minatar.cpp").write_bytes((sources / "minatar.cpp").read_bytes() + b"\n// changed\n")
    native._tags.clear()
    assert native.module_name() != before
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.load() is None  # not built there: training falls back, nothing is compiled


def test_a_failed_build_says_why_in_one_line_and_training_goes_on(monkeypatch, tmp_path, capsys):
    """A source the compiler rejects (here at its first line, so no time is spent on torch's headers): exit 1, one
    line naming the compiler's error and what happens instead, nothing loaded."""
    sources = tmp_path / "csrc"
    # the rejected source alone: with qzoo's sources beside it, ninja would let their compiles (torch's headers,
    # ~30 s) finish before reporting the failure
    sources.mkdir()
    (sources / "aaa.cpp").write_text('#error "qzoo test: this compiler says no"\n')
    monkeypatch.setattr(native, "SOURCE_DIR", sources)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert native.main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this compiler says no" in err[0] and "torch's calls from Python" in err[0], err
    assert native.load() is None and not native.library().exists()
