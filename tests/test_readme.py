"""The README as a script: its "Dynamic registration" examples, run as written.

The shell blocks are taken from README.md itself, so the README cannot drift from what
works. They run against scripts/run-local (on free ports), each in a bash where
run-local's `export` line was pasted first, as the README says. What each line must do
is read from its comment:

* a `dig` line: the comment lists its `+short` answer lines ("A and B", "A, B", or
  "nothing"), in any order;
* any other line exits 0, or N when its comment says "exits N";
* "stays in the foreground": started and left running, as in another terminal, until a
  "# Ctrl-C" line, which sends it SIGINT (by its PID); it must then exit 0.

run-local's own "try" commands run first: each exits 0 and gets an answer.
"""

from __future__ import annotations

import functools
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.polling import wait_for
from tests.support.procutil import REPO_ROOT
from tests.support.run_local import RunLocal

pytestmark = pytest.mark.e2e

SECTION = ("**Dynamic registration.**", "**Standalone.**")
FOREGROUND = "stays in the foreground"


@dataclass(frozen=True)
class Step:
    command: str  # empty for a "# Ctrl-C" line
    comment: str

    @property
    def answers(self) -> list[str]:
        if self.comment == "nothing":
            return []
        return sorted(re.split(r",\s*|\s+and\s+", self.comment.rstrip(":")))

    @property
    def exit_status(self) -> int:
        found = re.search(r"\bexits (\d+)\b", self.comment)
        return int(found.group(1)) if found else 0


def readme_steps() -> list[Step]:
    readme = (REPO_ROOT / "README.md").read_text()
    start, end = (readme.index(marker) for marker in SECTION)
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", readme[start:end], re.S):
        for line in block.splitlines():
            command, comment = split_comment(line)
            if command or comment.startswith("Ctrl-C"):
                steps.append(Step(command, comment))
    return steps


def split_comment(line: str) -> tuple[str, str]:
    """``'cmd   # comment'`` -> ``('cmd', 'comment')``; ``'# comment'`` -> ``('', 'comment')``."""
    found = re.match(r"(.*?)(?:^|\s+)#\s*(.*)", line)
    return (found.group(1).strip(), found.group(2).strip()) if found else (line.strip(), "")


@pytest.fixture(scope="module")
def run_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunLocal]:
    proc = RunLocal(tmp_path_factory.mktemp("run-local")).start()
    try:
        assert proc.wait_answering_or_exit(), proc.log_tail()
        yield proc
    finally:
        proc.stop(15)


def answered(run_local: RunLocal, step: Step,
             results: list[subprocess.CompletedProcess[str]]) -> bool:
    results.append(run_local.shell(step.command))
    return results[-1].returncode == 0 and sorted(results[-1].stdout.splitlines()) == step.answers


def test_the_section_has_the_steps_this_test_knows() -> None:
    """A guard on the parser: the README's steps are all found, with their comments."""
    steps = readme_steps()
    assert sum(s.command.startswith("dig ") for s in steps) >= 6
    assert sum(FOREGROUND in s.comment for s in steps) == 1
    assert sum(s.comment.startswith("Ctrl-C") for s in steps) == 1
    assert any(s.exit_status == 1 for s in steps) and any(s.exit_status == 2 for s in steps)


def test_run_local_instructions_work(run_local: RunLocal) -> None:
    commands = run_local.instructions()
    assert len(commands) >= 10
    for command in commands:
        result = run_local.shell(command)
        assert result.returncode == 0, (command, result.stderr)
        if command.startswith("dig ") and "+short" in command:
            assert result.stdout.strip(), command
        elif command.startswith("dig "):
            assert "status: NOERROR" in result.stdout and ", ANSWER: 0," not in result.stdout, \
                (command, result.stdout)


def test_dynamic_registration_runs_as_written(run_local: RunLocal, tmp_path: Path) -> None:
    foreground: subprocess.Popen[bytes] | None = None
    output = tmp_path / "foreground.out"
    try:
        for step in readme_steps():
            if step.comment.startswith("Ctrl-C"):
                assert foreground is not None, "a Ctrl-C with nothing in the foreground"
                foreground.send_signal(signal.SIGINT)
                assert foreground.wait(10) == 0, output.read_text()
                foreground = None
            elif FOREGROUND in step.comment:
                foreground = run_local.background(step.command, output)
                assert wait_for(lambda: "registered" in output.read_text(), 15), \
                    output.read_text()
            elif step.command.startswith("dig "):
                # "At once" is milliseconds: the etcd watch may still be on its way.
                results: list[subprocess.CompletedProcess[str]] = []
                assert wait_for(functools.partial(answered, run_local, step, results), 2, 0.1), \
                    (step, results[-1])
            else:
                result = run_local.shell(step.command)
                assert result.returncode == step.exit_status, (step, result.stdout,
                                                               result.stderr)
    finally:
        if foreground is not None and foreground.poll() is None:
            foreground.kill()
            foreground.wait(5)
