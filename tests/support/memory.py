"""A process's memory from /proc (Linux): what a request cost a gunicorn worker.

``with measure(pid) as usage: ...`` then ``usage.before``, ``usage.after`` (VmRSS) and
``usage.peak`` (VmHWM, reset to the current RSS on the way in, so it is the block's peak),
in bytes; ``usage.describe()`` says it in MB.
"""
import contextlib
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


def memory(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of ``pid``, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0]) * 1024  # reported in kB
    return fields


def reset_peak(pid: int):
    """VmHWM back to the current RSS (Linux >= 4.0): the next read is the peak since."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Usage:
    before: int
    after: int = 0
    peak: int = 0

    @property
    def grew(self) -> int:
        """The most the block added at any moment: its peak over the RSS before it."""
        return self.peak - self.before

    def describe(self) -> str:
        return (f"RSS {self.before / MB:.0f} MB before, {self.after / MB:.0f} MB after, "
                f"peak {self.peak / MB:.0f} MB (+{self.grew / MB:.0f} MB)")


@contextlib.contextmanager
def measure(pid: int):
    reset_peak(pid)
    usage = Usage(memory(pid)["VmRSS"])
    yield usage
    found = memory(pid)
    usage.after, usage.peak = found["VmRSS"], found["VmHWM"]
