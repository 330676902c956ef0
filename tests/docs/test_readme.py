"""Every ```python and ```bash block of README.md runs, in order, as written, on a fresh project.

The blocks run in a temporary folder: bash blocks with ``bash -euo pipefail`` and this
interpreter's ``bin/`` first on ``PATH`` (so ``shipyard`` and ``python`` are the tested ones), the
folder a block ``cd``s into carried to the next block; python blocks with this interpreter, in the
folder the last bash block left. An HTML comment on the line before a block changes that:

- ``<!-- readme-test: skip (reason) -->``: not run (it installs packages, or needs a service the
  test does not start); the reason is required.
- ``<!-- readme-test: background -->``: started in the background (a server); the test waits for the
  ``localhost`` port the block names and stops it when the README is done.

The port a background block listens on is replaced in every bash block by a free port, so the
test does not collide with a server already running on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|background)\b(.*?)-->")
FENCE = re.compile(r"^```(\w*)\s*$")
PORT = re.compile(r"(?:--port |-p |localhost:)(\d+)\b")


@dataclass
class Block:
    language: str
    code: str
    line: int
    mode: str  # run | skip | background
    reason: str = ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced python and bash blocks of ``text`` with the marker on the line before each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        start, language = i, opened.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if language not in ("python", "bash"):
            continue
        previous = lines[start - 1] if start else ""
        marker = MARKER.search(previous)
        mode, reason = (marker.group(1), marker.group(2).strip()) if marker else ("run", "")
        if mode == "skip" and not reason:
            raise AssertionError(f"README.md:{start + 1}: a skipped block must say why, e.g. "
                                 "<!-- readme-test: skip (installs packages) -->")
        blocks.append(Block(language, "\n".join(body) + "\n", start + 1, mode, reason))
    return blocks


def test_markers_are_parsed() -> None:
    text = ("<!-- readme-test: skip (installs) -->\n```bash\npip install x\n```\n\n"
            "```python\nprint(1)\n```\n```yaml\na: 1\n```\n"
            "<!-- readme-test: background -->\n```bash\nserve\n```\n")
    blocks = readme_blocks(text)
    assert [(b.language, b.mode, b.line) for b in blocks] == [("bash", "skip", 2), ("python", "run", 6),
                                                             ("bash", "background", 13)]
    assert blocks[0].reason == "(installs)" and blocks[1].code == "print(1)\n"
    with pytest.raises(AssertionError, match="must say why"):
        readme_blocks("<!-- readme-test: skip -->\n```bash\nx\n```\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the background block exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s:\n{log.read_text()}")


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    blocks = readme_blocks(README.read_text())
    assert any(b.mode == "run" and b.language == "python" for b in blocks)
    assert any(b.mode == "run" and b.language == "bash" for b in blocks)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHIPYARD_", "AWS_")) or k.startswith("SHIPYARD_TEST_")}
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""), HOME=str(tmp_path / "home"),
               PYTHONUNBUFFERED="1")
    (tmp_path / "home").mkdir()
    ports: dict[str, str] = {}
    for block in blocks:
        if block.mode == "background":
            named = set(PORT.findall(block.code))
            assert len(named) == 1, f"README.md:{block.line}: a background block names the one port it listens on"
            ports[named.pop()] = str(_free_port())
    cwd = tmp_path / "work"
    cwd.mkdir()
    where = tmp_path / "cwd.txt"
    background: list[subprocess.Popen[bytes]] = []
    try:
        for n, block in enumerate(blocks):
            label = f"README.md:{block.line} ({block.language})"
            if block.mode == "skip":
                continue
            if block.language == "python":
                done = subprocess.run([sys.executable, "-c", block.code], cwd=cwd, env=env,
                                      capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, f"{label} failed:\n{done.stdout}\n{done.stderr}"
                continue
            code = block.code
            for old, new in ports.items():
                code = re.sub(rf"\b{old}\b", new, code)
            if block.mode == "background":
                log = tmp_path / f"background-{n}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(["bash", "-c", f"exec {code.strip()}"], cwd=cwd, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                background.append(proc)
                _wait_for_port(int(PORT.findall(code)[0]), proc, log)
                continue
            script = f"set -euo pipefail\n{code}\npwd > {where}\n"
            done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, f"{label} failed:\n{done.stdout}\n{done.stderr}"
            cwd = Path(where.read_text().strip())
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
