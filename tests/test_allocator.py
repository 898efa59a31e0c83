import platform
import subprocess
import sys

import pytest

SCRIPT = """
import sys
import torch
from fast_style.train.allocator import keep_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
before = rss_mib()
block = torch.ones(64 * 2**20)  # 256 MiB, touched
del block
print(applied, rss_mib() - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_activation_memory_is_kept_for_reuse_only_when_asked():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        applied, kept_mib = out.stdout.split()
        return applied == "True", float(kept_mib)

    applied, kept = run("tuned")
    assert applied
    assert kept > 200  # the freed 256 MiB block stays mapped, ready for the next step
    applied, kept = run("default")
    assert not applied
    assert kept < 50  # glibc's default: unmapped on free
