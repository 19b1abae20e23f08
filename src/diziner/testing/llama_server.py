"""``python -m llama_cpp.server`` serving the embedded SmolLM2 on 127.0.0.1, for tests that need
a real OpenAI-compatible server with a real (weak) model behind it."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDidNotStart(RuntimeError):
    pass


@contextmanager
def smollm2_server(log_path: Path, *, n_ctx: int = 2048, n_threads: int = 2, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Start the server, wait until ``/v1/models`` answers, yield its base URL (``…/v1``), and
    stop it on exit. Its output goes to ``log_path``; :class:`ServerDidNotStart` carries the log's
    tail when it exits or does not answer in time."""
    import httpx

    from diziner.llm.local import smollm2_path

    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads),
                                 "--n_ctx", str(n_ctx)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + start_timeout_s
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise ServerDidNotStart("llama_cpp.server did not start: " + Path(log_path).read_text()[-2000:])
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
