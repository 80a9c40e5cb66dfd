"""The real Azure ML inference server (``azmlinfsrv``), run from its own virtual environment.

``azureml-inference-server-http`` pins flask, pydantic and opentelemetry versions that conflict
with ``azure-ai-ml``, so — as in its own deployment container — it gets a private virtual
environment, built on first use under the cache directory and reused afterwards:
``$AZVISION_CACHE_DIR`` (default ``$XDG_CACHE_HOME/azvision`` or ``~/.cache/azvision``) /
``inference-server-<version>``. A marker file is written last, so an interrupted build is redone.

Example::

    python = ensure_environment()  # about 30-60 s the first time, instant afterwards
    server = InferenceServer(python, Path("score.py"), Path("model"), label="cats/blue")
    server.start()
    print(server.url)  # http://127.0.0.1:PORT, liveness at "/", scoring at "/score"
    server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx

if sys.platform != "win32":
    import fcntl

__all__ = [
    "BASE_REQUIREMENTS",
    "INFERENCE_SERVER_VERSION",
    "InferenceServer",
    "InferenceServerError",
    "cache_dir",
    "ensure_environment",
    "environment_dir",
]

logger = logging.getLogger("azvision.emulator._azure_ml")

INFERENCE_SERVER_VERSION = "1.5.1"
BASE_REQUIREMENTS: tuple[str, ...] = (
    f"azureml-inference-server-http=={INFERENCE_SERVER_VERSION}",
    "numpy>=1.26",
    "pillow>=10.0",
    "onnxruntime>=1.17",
)
_MARKER = ".azvision-ready.json"
_BUILD_TIMEOUT_S = 1200.0
_LOG_TAIL_LINES = 25
_PORT_ATTEMPTS = 3

# Runs inside the server's own interpreter. azmlinfsrv hard-codes 0.0.0.0 as its bind address, so
# the constant is patched before the server module imports it; the watchdog ends the server when
# the emulator process disappears without stopping it (SIGKILL, crash).
_LAUNCHER = """
import os, signal, sys, threading, time
import gunicorn.config
import azureml_inference_server_http.constants as constants

constants.DEFAULT_HOST = "127.0.0.1"
options = ["--graceful-timeout", "2"]
if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
    options.append("--no-control-socket")
os.environ["GUNICORN_CMD_ARGS"] = " ".join(options)
parent = int(os.environ.pop("AZVISION_PARENT_PID"))

def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
from azureml_inference_server_http.amlserver import run
sys.exit(run())
"""


class InferenceServerError(RuntimeError):
    """The inference-server environment could not be built, or a server did not come up."""


def cache_dir() -> Path:
    """The azvision cache root: ``$AZVISION_CACHE_DIR``, else ``~/.cache/azvision``.

    Example::

        AZVISION_CACHE_DIR=/srv/cache azvision emulator --aml-endpoint cats=score.py
        # builds /srv/cache/inference-server-1.5.1 on first use
    """
    configured = os.environ.get("AZVISION_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "azvision"


def environment_dir(requirements: Sequence[str] = ()) -> Path:
    """Where the environment for ``BASE_REQUIREMENTS`` plus ``requirements`` lives.

    Example:
        >>> environment_dir().name
        'inference-server-1.5.1'
    """
    name = f"inference-server-{INFERENCE_SERVER_VERSION}"
    if requirements:
        digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:10]
        name = f"{name}-{digest}"
    return cache_dir() / name


def _python_in(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def _child_env() -> dict[str, str]:
    # The emulator's own interpreter settings must not leak into the server's environment.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise builds between processes (e.g. parallel test workers) on POSIX."""
    with open(lock_path, "a+b") as handle:
        if sys.platform != "win32":
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if sys.platform != "win32":
                fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_environment(requirements: Sequence[str] = (), *, timeout: float = _BUILD_TIMEOUT_S) -> Path:
    """Return the environment's Python, creating the environment first if it is not ready.

    Building runs ``python -m venv`` and ``pip install`` (network access to the package index
    needed once); it logs at INFO and prints one line to stderr, since it takes a while.

    Example::

        python = ensure_environment(["scikit-learn"])
    """
    target = environment_dir(requirements)
    python = _python_in(target)
    if (target / _MARKER).is_file():
        return python
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock")):
        if not (target / _MARKER).is_file():
            _build(target, [*BASE_REQUIREMENTS, *requirements], timeout)
    return python


def _build(target: Path, requirements: list[str], timeout: float) -> None:
    shutil.rmtree(target, ignore_errors=True)
    log_path = target.with_name(target.name + ".build.log")
    message = (
        f"azvision: building the Azure ML inference-server environment in {target} "
        "(first use only, usually under two minutes)"
    )
    logger.info("%s; pip output goes to %s", message, log_path)
    print(message, file=sys.stderr, flush=True)
    started = time.monotonic()
    python = _python_in(target)
    steps = [
        [sys.executable, "-m", "venv", str(target)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *requirements],
    ]
    with open(log_path, "wb") as log:
        for step in steps:
            remaining = timeout - (time.monotonic() - started)
            try:
                subprocess.run(
                    step,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_child_env(),
                    timeout=max(1.0, remaining),
                    check=True,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                log.flush()
                raise InferenceServerError(
                    f"could not build the inference-server environment ({step[2]} step: {exc}); "
                    f"last lines of {log_path}:\n{_tail(log_path)}"
                ) from exc
    seconds = round(time.monotonic() - started, 1)
    marker = {"requirements": requirements, "python": sys.version.split()[0], "seconds": seconds}
    (target / _MARKER).write_text(json.dumps(marker), encoding="utf-8")
    logger.info("azvision: inference-server environment ready in %.1f s (%s)", seconds, target)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_live: set[InferenceServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop()


class InferenceServer:
    """One ``azmlinfsrv`` process running ``score_script`` on a free ``127.0.0.1`` port.

    The process gets its own process group; `stop` (also run at interpreter exit) sends
    SIGTERM to the group, waits, then SIGKILLs it.

    Example::

        server = InferenceServer(python, Path("score.py"), None, label="demo/blue", log_dir=tmp)
        server.start(timeout=60)
        httpx.post(server.url + "/score", content=b"...")
        server.stop()
    """

    def __init__(
        self,
        python: Path,
        score_script: Path,
        model_dir: Path | None,
        *,
        label: str,
        log_dir: Path,
        workers: int = 1,
    ) -> None:
        self.python = python
        self.score_script = score_script.resolve()
        self.model_dir = model_dir.resolve() if model_dir else None
        self.label = label
        self.workers = workers
        self.log_path = log_dir / f"azmlinfsrv-{label.replace('/', '-')}.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server (``/`` is liveness, ``/score`` scores)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Launch the process and wait until ``GET /`` answers (the score script's ``init()`` ran)."""
        for attempt in range(_PORT_ATTEMPTS):
            self._launch()
            try:
                self._wait_ready(timeout)
                return
            except InferenceServerError:
                self.stop()
                if attempt + 1 == _PORT_ATTEMPTS or "in use" not in _tail(self.log_path):
                    raise

    def _launch(self) -> None:
        self.port = _free_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = [str(self.python), "-c", _LAUNCHER, "--entry_script", str(self.score_script)]
        args += ["--port", str(self.port), "--worker_count", str(self.workers)]
        if self.model_dir:
            args += ["--model_dir", str(self.model_dir)]
        env = _child_env()
        env.update(
            AZVISION_PARENT_PID=str(os.getpid()),
            AML_APP_ROOT=str(self.score_script.parent),
            PYTHONUNBUFFERED="1",
        )
        self._process = subprocess.Popen(
            args,
            cwd=self.score_script.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=sys.platform != "win32",
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
        with _live_lock:
            _live.add(self)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                assert self._process is not None
                code = self._process.poll()
                if code is not None:
                    raise InferenceServerError(
                        f"azmlinfsrv for {self.label} exited with status {code} before it was "
                        f"ready; last lines of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + "/").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise InferenceServerError(
                        f"azmlinfsrv for {self.label} was not ready after {timeout:.0f} s; "
                        f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process group, escalating to a kill after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                self._signal(process, terminate=True)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(process, terminate=False)
                    process.wait(timeout)
            # Workers left behind by a master that died on its own go with the group.
            self._signal(process, terminate=False)
        if self._log is not None:
            self._log.close()
            self._log = None
        with _live_lock:
            _live.discard(self)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], *, terminate: bool) -> None:
        if sys.platform == "win32":
            with contextlib.suppress(OSError):
                process.terminate() if terminate else process.kill()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM if terminate else signal.SIGKILL)
