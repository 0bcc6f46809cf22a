"""A private podman service serving the Docker Engine API on a socket in a temporary directory,
and tiny images made without a registry: a static busybox plus a shell script, by ``podman import``.

The flags are what this kind of sandbox needs (runc, not crun; default ulimits the container can
set without CAP_SYS_RESOURCE; storage under the temporary directory through --root/--runroot/
--tmpdir rather than a storage.conf, which cost 20 s a run).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


def missing() -> str | None:
    """Why podman cannot run here (None when it can)."""
    if not shutil.which("podman"):
        return "podman is not installed (make system-deps installs podman runc busybox-static)"
    if not shutil.which("runc"):
        return "runc is not installed (make system-deps installs it)"
    if not BUSYBOX.exists():
        return "/bin/busybox is missing (make system-deps installs busybox-static)"
    return None


class Podman:
    """``with Podman() as podman:`` a running service; ``podman.url`` for docker.DockerClient."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="sluice-podman-"))
        self.socket = self.home / "podman.sock"
        self.url = f"unix://{self.socket}"
        (self.home / "containers.conf").write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.home / "containers.conf")}
        self.flags = ["--root", str(self.home / "root"), "--runroot", str(self.home / "run"),
                      "--tmpdir", str(self.home / "tmp"), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                      "--events-backend", "file"]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def podman(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(["podman", *self.flags, *args], env=self.env, input=input, capture_output=True,
                              timeout=120)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"podman {args[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode()

    def start(self) -> Podman:
        import docker

        self.log = open(self.home / "service.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(["podman", *self.flags, "system", "service", "--time=0", self.url],
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited: {(self.home / 'service.log').read_text()[-2000:]}")
            if self.socket.exists():
                try:
                    docker.DockerClient(base_url=self.url, timeout=5).ping()
                    return self
                except Exception:  # noqa: BLE001 - not serving yet
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("podman system service did not answer within 30 s")
            time.sleep(0.1)

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def image(self, name: str, script: str, entrypoint: bool = True) -> str:
        """Build ``name`` (e.g. docker.io/sluicetest/tap:ok): busybox with its applets in /bin, and
        ``script`` as /bin/tap, the entrypoint (or the default command when ``entrypoint`` is False)."""
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for folder in ("bin", "tmp", "config", "proc", "sys", "dev", "etc"):
                info = tarfile.TarInfo(folder)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
                tar.addfile(info)
            tar.add(str(BUSYBOX), "bin/busybox")
            for applet in applets:
                if applet != "busybox":
                    info = tarfile.TarInfo(f"bin/{applet}")
                    info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                    tar.addfile(info)
            body = script.encode()
            info = tarfile.TarInfo("bin/tap")
            info.size, info.mode = len(body), 0o755
            tar.addfile(info, io.BytesIO(body))
        change = 'ENTRYPOINT ["/bin/tap"]' if entrypoint else 'CMD ["/bin/tap"]'
        self.podman("import", "--change", change, "-", name, input=buffer.getvalue())
        return name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()
        try:  # the storage may hold read-only or mounted layers
            self.podman("system", "reset", "--force")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Podman:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
