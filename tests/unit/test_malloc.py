"""qzoo/malloc.py: with the settings in effect, freed megabytes stay in the process and a training step's buffers
are reused instead of being faulted in from the kernel again."""

import subprocess
import sys

import pytest

from qzoo import malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# A fresh process (nothing else has shaped the allocator): where does a 16 MB block come from, and is the heap
# still as large after it is freed?  mallinfo2: hblkhd = bytes in mmap-ed blocks, arena = bytes of the heap.
ONE_BLOCK = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
if sys.argv[1] == "keep":
    from qzoo import malloc
    assert malloc.keep_freed_memory()
before = libc.mallinfo2()
block = libc.malloc(16 << 20)
ctypes.memset(block, 1, 16 << 20)
allocated = libc.mallinfo2()
libc.free(block)
freed = libc.mallinfo2()
print(allocated.hblkhd - before.hblkhd, allocated.arena - before.arena, freed.arena - before.arena)
"""

STEPS = """
import resource, torch
from qzoo import malloc
from qzoo.networks import NatureCNN
assert malloc.keep_freed_memory()
torch.set_num_threads(1)
net = NatureCNN((4, 84, 84))
frames = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
def step():
    net.zero_grad(set_to_none=True)
    net(frames).square().mean().backward()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def run(script: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def test_a_large_block_comes_from_the_heap_and_stays_after_free():
    mib16 = 16 << 20
    mapped, heap, kept = run(ONE_BLOCK, "default")
    assert mapped >= mib16 and heap == 0 and kept == 0  # glibc's defaults: mapped on its own, unmapped on free
    mapped, heap, kept = run(ONE_BLOCK, "keep")
    assert mapped == 0 and heap >= mib16 and kept >= mib16  # from the heap, kept for the next step


def test_training_steps_do_not_fault_their_buffers_in_again():
    # the backward of a batch of 16 through the Nature CNN frees and allocates megabytes per step (~1,000-3,000
    # page faults a step with glibc's defaults, depending on what came before)
    (faults,) = run(STEPS)
    assert faults < 200  # at most a one-off growth of the heap among the 10 steps, not every step


def test_settings_the_user_gave_win(monkeypatch):
    monkeypatch.setattr(malloc, "_done", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert malloc.user_set() and not malloc.keep_freed_memory()
    monkeypatch.setattr(malloc, "_done", None)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1000000")
    assert malloc.user_set() and not malloc.keep_freed_memory()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2")
    assert not malloc.user_set()
