"""qzoo/bench/peer.py: where the stable-baselines3 peer's python comes from."""

from pathlib import Path

from qzoo.bench.peer import ensure_sb3


def test_a_named_sb3_python_is_used_as_it_is_and_no_venv_is_made(tmp_path, monkeypatch):
    # a machine that cannot download (a lent GPU machine with the wheels carried in) names its own python
    venv = tmp_path / "sb3-venv"
    monkeypatch.setenv("QZOO_SB3_VENV", str(venv))
    monkeypatch.setenv("QZOO_SB3_PYTHON", "/opt/torch/.venv/bin/python3")
    assert ensure_sb3(log=None) == Path("/opt/torch/.venv/bin/python3")
    assert not venv.exists()


def test_without_a_named_python_the_venv_is_used(tmp_path, monkeypatch):
    venv = tmp_path / "sb3-venv"
    (venv / "bin").mkdir(parents=True)
    from qzoo.bench import peer

    (venv / ".qzoo-installed").write_text(" ".join(peer.PEER_PACKAGES) + "\n")  # a finished install
    monkeypatch.delenv("QZOO_SB3_PYTHON", raising=False)
    monkeypatch.setenv("QZOO_SB3_VENV", str(venv))
    assert ensure_sb3(log=None) == venv / "bin" / "python"
