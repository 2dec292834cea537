"""The command line's help and start-up: what a user sees first."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from tgbatch import cli
from tgbatch.cli import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    """``tgbatch --help`` lists each command by a stand-in: its text must be the real command's."""
    module = __import__(f"tgbatch.cli.{name}", fromlist=["x"])
    command = next(f for n, f in vars(module).items() if n.endswith("_command") and callable(f))
    first = inspect.getdoc(command).split("\n\n")[0].replace("\n", " ")
    assert COMMANDS[name] == first


def _tgbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgbatch", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command_and_loads_nothing_heavy() -> None:
    result = _tgbatch("--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout
    code = (
        "import sys; sys.argv = ['tgbatch', '--help']\n"
        "from tgbatch.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pyarrow', 'aiohttp', 'httpx', 'pydantic', 'tgbatch.runner', 'jinja2') if m in sys.modules), file=sys.stderr)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert loaded.stderr.strip().splitlines()[-1] == "[]"


def test_each_command_has_its_full_help() -> None:
    for name in COMMANDS:
        result = _tgbatch(name, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout and "--help" in result.stdout, result.stderr


def test_version() -> None:
    result = _tgbatch("--version")
    assert result.returncode == 0 and result.stdout.startswith("tgbatch ")


def test_register_all_for_in_process_use() -> None:
    cli._register()
    names = {c.name for c in cli.app.registered_commands}
    assert set(COMMANDS) <= names


def test_help_reads_as_written() -> None:
    """Flags show no made-up value (``--fresh <bool>``) and the usage line names the argument plainly."""
    result = _tgbatch("run", "--help")
    assert "[OPTIONS] JOB" in result.stdout and "{" not in result.stdout.splitlines()[1]
    fresh = next(line for line in result.stdout.splitlines() if "--fresh" in line)
    assert "<bool>" not in fresh and "BOOL" not in fresh


def test_library_warnings_print_once() -> None:
    """datasets and huggingface_hub print through handlers of their own: a run must not print them twice."""
    code = (
        "from tgbatch.cli._progress import setup_logging\n"
        "setup_logging()\n"
        "import datasets, huggingface_hub, logging\n"
        "logging.getLogger('datasets.load').warning('W-datasets')\n"
        "logging.getLogger('huggingface_hub.utils').warning('W-hub')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.count("W-datasets") == 1 and result.stderr.count("W-hub") == 1, result.stderr


def test_a_terminal_of_zero_columns_gets_log_lines(tmp_path: Path) -> None:
    """Some terminals (a CI pseudo-terminal, a detached pane) report 0 columns: a bar would show nothing there."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from .runner_util import job_dict, prompts, write_job, write_jsonl

    data = write_jsonl(tmp_path / "p.jsonl", prompts(20))
    job = write_job(tmp_path / "job.yaml", job_dict(data, output={"dir": str(tmp_path / "out")}))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 0, 0, 0))  # 24 rows, 0 columns
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tgbatch", "run", str(job)], stderr=follower, stdout=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"rows this run" in output, output[-2000:]
