"""What a results directory records about the run: package versions, devices, the git revision."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path


def _version(pkg: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # noqa: BLE001
        return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("rbk", "jax", "jaxlib", "optax", "numpy", "scipy", "matplotlib"):
        out[pkg] = _version(pkg)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    import jax

    devs = jax.devices()
    return {
        "platform": jax.default_backend(),
        "devices": [str(d) for d in devs],
        "device_kind": devs[0].device_kind if devs else None,
        "device_count": len(devs),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def git_info(path: str | os.PathLike | None = None) -> dict:
    """``{'revision', 'dirty'}`` of the git checkout holding rbk's source (``None`` outside one)."""
    path = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"revision": None, "dirty": None}
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
        dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
        return {"revision": rev.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
