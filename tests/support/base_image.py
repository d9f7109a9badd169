"""A local stand-in for ``python:3.11-slim``, for machines that reach no image registry.

``ensure_base_image(engine)`` returns at once if ``BASE_TAG`` exists (the engine's data root
is kept between runs). Otherwise it builds it:

1. ``debootstrap --variant=minbase`` Debian bookworm (Python 3.11) from the apt mirror this
   machine uses, with python3, python3-venv and ca-certificates;
2. ``python3 -m venv /usr/local`` in a chroot, so /usr/local/bin/python and pip exist where
   the official image has them (and ``pip install`` goes to /usr/local, not Debian's python);
3. the machine's CA bundle (and its extra CAs) replaces the image's, and /etc/pip.conf carries
   the machine's network pip settings (index URLs, trusted hosts, proxy; never local paths),
   so that ``pip install`` in ``docker build --network host`` reaches the index the way pip
   does here (through a TLS-intercepting egress proxy on these machines);
4. apt lists, .debs, docs and locales removed, then ``tar -C root -c . | docker import``.

The result (``BaseImage``) holds the seconds each step took and the image size.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASE_TAG = "mlflow-logs-base:bookworm-py311"
SUITE = "bookworm"
PACKAGES = ["python3", "python3-venv", "ca-certificates"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# What `docker import` cannot take from a tarball: the official image's environment.
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
PIP_NETWORK_KEYS = {"index-url", "extra-index-url", "trusted-host", "proxy", "timeout",
                    "default-timeout", "retries"}
SLIM_PATHS = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
              "usr/share/locale", "usr/share/info"]


@dataclass
class BaseImage:
    tag: str
    built: bool                 # False: it was there already
    debootstrap_seconds: float = 0.0
    venv_seconds: float = 0.0
    import_seconds: float = 0.0
    size_bytes: int = 0


def apt_mirror() -> str:
    """The Debian mirror URL in this machine's apt sources (deb822 or one-line format)."""
    apt = Path("/etc/apt")
    sources = sorted(apt.glob("sources.list.d/*.sources"))
    sources += [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]
    for path in sources:
        text = path.read_text() if path.exists() else ""
        for url in re.findall(r"^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def pip_network_config() -> str:
    """An /etc/pip.conf for the image: this machine's pip network settings, CA at CA_BUNDLE."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True).stdout
    settings = {}
    for line in out.splitlines():   # "global.index-url='https://...'" or ":env:.proxy='...'"
        match = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line)
        if match and match[1] in PIP_NETWORK_KEYS:
            remote = [v for v in match[2].split() if not v.startswith(("file:", "/"))]
            if remote:
                settings[match[1]] = " ".join(remote)
    settings["cert"] = str(CA_BUNDLE)
    return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


def _run(cmd, log, what, timeout=900):
    t0 = time.monotonic()
    with open(log, "ab") as out:
        code = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode
    if code:
        tail = Path(log).read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{what} failed (exit {code}); log {log} tail:\n{tail}")
    return time.monotonic() - t0


def _copy_machine_trust(root: Path):
    shutil.copy2(CA_BUNDLE, root / CA_BUNDLE.relative_to("/"))
    if EXTRA_CAS.is_dir():   # kept by a later update-ca-certificates inside the image
        shutil.copytree(EXTRA_CAS, root / EXTRA_CAS.relative_to("/"), dirs_exist_ok=True)
    (root / "etc/pip.conf").write_text(pip_network_config())


def build_rootfs(root: Path, log: Path, result: BaseImage):
    result.debootstrap_seconds = _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, root,
         apt_mirror()], log, "debootstrap")
    result.venv_seconds = _run(["chroot", root, "python3", "-m", "venv", "/usr/local"], log,
                               "python3 -m venv /usr/local (chroot)")
    _copy_machine_trust(root)
    for rel in SLIM_PATHS:
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()  # apt and dpkg expect the directories themselves
    (root / "var/lib/apt/lists/partial").mkdir()


def why_not(engine, tag=BASE_TAG) -> str | None:
    """None if ``tag`` exists or can be built here; else the reason (for pytest.skip)."""
    if engine.image_exists(tag):
        return None
    if not shutil.which("debootstrap"):
        return f"building {tag} needs debootstrap (apt-get install debootstrap)"
    if os.geteuid() != 0:
        return f"building {tag} needs root (debootstrap, chroot)"
    return None


def ensure_base_image(engine, tag=BASE_TAG, log_dir=None) -> BaseImage:
    """The base image ``tag`` in ``engine``: built (and timed) only if missing."""
    if engine.image_exists(tag):
        return BaseImage(tag, built=False, size_bytes=engine.image_size(tag))
    reason = why_not(engine, tag)
    if reason:
        raise RuntimeError(reason)
    result = BaseImage(tag, built=True)
    log_dir = Path(log_dir or engine.dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "base-image.log"
    work = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    try:
        build_rootfs(work / "root", log, result)
        t0 = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", work / "root", "-c", "."], stdout=subprocess.PIPE)
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        imported = subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout,
                                  env=engine.env, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() or imported.returncode:
            raise RuntimeError(f"docker import of {tag} failed: {imported.stderr[-3000:]}")
        result.import_seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.size_bytes = engine.image_size(tag)
    return result
