"""Every example in README.md runs, in order, in a fresh folder, as a reader would paste it.

The README's fenced blocks are read with a Markdown parser and sorted by their language:

- ``bash`` blocks run as one ``bash -euo pipefail`` script each, in one temporary folder
  shared by the whole README, so a later block reads the files an earlier one wrote;
- ``console`` blocks run each ``$ command`` and compare what it printed with the lines shown
  under it: labels, names, headers and counts must match, while numbers with a decimal point
  or a thousands separator (timings, scores) and ``...`` match anything;
- ``python`` blocks run with this interpreter in that folder;
- ``text`` (command synopses, output shown for its shape), ``ini``, ``nginx`` and ``json``
  (files to write, not commands) are not run. Any other block fails the suite, so a new
  example cannot slip past it untagged.

A block that cannot run here says so where readers see it: the paragraph before it holds
"not run in CI: REASON". A long command carries the visible comment ``# CI runs it with
--preset smoke``, and only that flag is added. Ports 8000 and 8001 are swapped for free ones
so a server already listening on this machine cannot fail the run; every process a block
leaves behind is stopped when it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

RUN = frozenset({"bash", "console", "python"})
SHOWN = frozenset({"text", "ini", "nginx", "json"})
NOT_RUN = re.compile(r"not run in CI: ([^)]+?)(?:\)|\.(?:\s|$))", re.IGNORECASE)
SMOKE = re.compile(r"^(?P<command>.*?)\s+#.*\bCI runs it with (?P<flag>--preset smoke)\b.*$")
BLOCK_TIMEOUT_S = 300  # the longest block, the quickstart at smoke size, takes about 50 s


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line of the opening fence in the README
    lang: str
    code: str
    not_run: str | None  # the reason the README gives, when it says it is not run in CI


def read_examples(text: str) -> list[Example]:
    """The fenced blocks of ``text`` in order; an indented code block is an error, because
    it has no language to say whether it runs."""
    tokens = MarkdownIt("commonmark").parse(text)
    examples: list[Example] = []
    last_paragraph = ""
    for token in tokens:
        if token.type == "inline":
            last_paragraph = token.content
        elif token.type == "code_block":
            line = token.map[0] + 1 if token.map else 0
            raise AssertionError(
                f"README.md:{line}: an indented code block; fence it with a language "
                f"({', '.join(sorted(RUN | SHOWN))})"
            )
        elif token.type == "fence":
            lang = token.info.strip().split(" ")[0]
            line = token.map[0] + 1 if token.map else 0
            if lang not in RUN | SHOWN:
                raise AssertionError(
                    f"README.md:{line}: a block in {lang or 'no language'}; say bash, console "
                    f"or python (run by this test), or {', '.join(sorted(SHOWN))} (shown only)"
                )
            reason = NOT_RUN.search(last_paragraph)
            examples.append(Example(line, lang, token.content, reason.group(1) if reason else None))
    return examples


def _with_smoke_flags(code: str) -> str:
    lines = []
    for line in code.splitlines():
        match = SMOKE.match(line)
        lines.append(f"{match['command']} {match['flag']}" if match else line)
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ReadmeRunner:
    """Runs examples in ``folder`` with this interpreter's environment first on PATH."""

    folder: Path
    ports: dict[str, str]

    @classmethod
    def in_folder(cls, folder: Path) -> ReadmeRunner:
        return cls(folder, {"8000": str(_free_port()), "8001": str(_free_port())})

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env["COLUMNS"] = "200"  # a wide terminal: tables in a pipe are otherwise cut to 80 columns
        env.pop("PYTHONPATH", None)
        return env

    def _ported(self, code: str) -> str:
        for readme_port, port in self.ports.items():
            code = re.sub(rf"\b{readme_port}\b", port, code)
        return code

    def _execute(self, argv: list[str], example: Example) -> str:
        """Run ``argv`` in its own process group; stop whatever it left running."""
        process = subprocess.Popen(
            argv,
            cwd=self.folder,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(
                f"README.md:{example.line}: still running after {BLOCK_TIMEOUT_S} s\n{output}"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError):  # a server left in the background
                os.killpg(process.pid, signal.SIGTERM)
        if process.returncode != 0:
            raise AssertionError(
                f"README.md:{example.line}: the {example.lang} block exited with "
                f"{process.returncode}\n--- block ---\n{example.code}"
                f"--- output ---\n{output[-6000:]}"
            )
        return output

    def run(self, example: Example) -> None:
        code = self._ported(_with_smoke_flags(example.code))
        if example.lang == "python":
            script = self.folder / f".readme_{example.line}.py"
            script.write_text(code, encoding="utf-8")
            self._execute([sys.executable, str(script)], example)
        elif example.lang == "bash":
            self._execute(["bash", "-euo", "pipefail", "-c", code], example)
        else:
            self._run_console(example, code)

    def _run_console(self, example: Example, code: str) -> None:
        """Run the ``$`` commands of a console block in one shell, each output split off by
        a marker line, and compare each with the lines the README shows under it."""
        commands, expected = console_parts(code)
        marker = "@@readme-command-output@@"
        script = "".join(f"echo {marker}\n{command}\n" for command in commands)
        output = self._execute(["bash", "-euo", "pipefail", "-c", script], example)
        outputs = output.split(marker + "\n")[1:]
        for command, shown, printed in zip(commands, expected, outputs, strict=True):
            missing = unmatched_lines(shown, printed)
            if missing:
                raise AssertionError(
                    f"README.md:{example.line}: `{command}` printed\n{printed}\n"
                    f"which does not show the README's line:\n{missing}"
                )


def console_parts(code: str) -> tuple[list[str], list[list[str]]]:
    """``$`` commands (with their ``\\`` continuation lines) and the lines shown after each."""
    commands: list[str] = []
    expected: list[list[str]] = []
    continuing = False
    for line in code.splitlines():
        if continuing:
            commands[-1] += "\n" + line
        elif line.startswith("$ "):
            commands.append(line[2:])
            expected.append([])
        elif commands and line.strip():
            expected[-1].append(line)
        continuing = bool(commands) and line.endswith("\\") and not expected[-1]
    return commands, expected


_NUMBER = r"-?(?:\d+\.\d+|\d{1,3}(?:,\d{3})+)(?:e[-+]?\d+)?"


def line_pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a pattern: numbers with a point or a thousands separator and
    ``...`` match anything of their kind; runs of spaces match any run of spaces."""
    pattern = ""
    for piece in re.split(rf"(\.\.\.|{_NUMBER}|\s+)", shown.strip()):
        if piece == "...":
            pattern += ".*?"
        elif re.fullmatch(_NUMBER, piece):
            pattern += r"-?[\d.,]+(?:e[-+]?\d+)?"
        elif piece.isspace():
            pattern += r"\s+"
        else:
            pattern += re.escape(piece)
    return re.compile(pattern)


def unmatched_lines(shown: list[str], printed: str) -> str | None:
    """The first shown line that does not appear, in order, in ``printed``; None if all do."""
    lines = printed.splitlines()
    position = 0
    for want in shown:
        pattern = line_pattern(want)
        while position < len(lines) and not pattern.search(lines[position]):
            position += 1
        if position == len(lines):
            return want
        position += 1
    return None


def test_every_block_says_whether_it_runs() -> None:
    examples = read_examples(README.read_text(encoding="utf-8"))
    run = [e for e in examples if e.lang in RUN]
    assert len(run) >= 20, "the README's examples are the runnable blocks"
    for example in examples:
        if example.not_run is not None:
            assert example.lang in RUN, f"README.md:{example.line}: only runnable blocks skip"
            assert len(example.not_run.split()) >= 3, f"README.md:{example.line}: say why"


def test_a_broken_example_fails_the_suite(tmp_path: Path) -> None:
    """A renamed flag, a shown output the command no longer prints, and an unfenced block."""
    runner = ReadmeRunner.in_folder(tmp_path)
    broken = read_examples("Try:\n\n```bash\nedgelstm train --dataset-name JapaneseVowels\n```\n")
    with pytest.raises(AssertionError, match=r"README.md:3: the bash block exited with 2"):
        runner.run(broken[0])
    console = read_examples(
        "```console\n$ edgelstm train --list-datasets\n...JapaneseVowels...\n...NoSuchSet...\n```\n"
    )
    with pytest.raises(AssertionError, match=r"does not show the README's line:\n\.\.\.NoSuchSet"):
        runner.run(console[0])
    with pytest.raises(AssertionError, match="indented code block"):
        read_examples("Run:\n\n    edgelstm quickstart\n")
    with pytest.raises(AssertionError, match="no language"):
        read_examples("```\nedgelstm quickstart\n```\n")


def test_renaming_a_flag_in_the_real_readme_fails_at_that_example(tmp_path: Path) -> None:
    """The worked path's first block with ``--dataset`` misspelt, as a rename would leave
    it: the CLI refuses the flag before it trains, and the runner names the README line."""
    text = README.read_text(encoding="utf-8")
    command = "edgelstm train --task classify --dataset JapaneseVowels --out runs/jv"
    assert command in text
    broken = text.replace(command, command.replace("--dataset", "--data-set"))
    block = next(e for e in read_examples(broken) if "--data-set" in e.code)
    line = next(i for i, row in enumerate(broken.splitlines(), 1) if "--data-set" in row)
    assert block.lang == "bash" and block.not_run is None and block.line < line
    with pytest.raises(AssertionError, match=rf"README.md:{block.line}: .*exited with 2"):
        ReadmeRunner.in_folder(tmp_path).run(block)


def test_shown_output_matches_labels_and_counts_not_timings() -> None:
    shown = ["wrote preds.csv: 370 sequences; provider cpu; accuracy 0.9757", '{"label":"9",...}']
    printed = (
        "note: something\nwrote preds.csv: 370 sequences; provider cpu; accuracy 0.9811\n"
        '{"label":"9","confidence":0.5}\n'
    )
    assert unmatched_lines(shown, printed) is None
    assert unmatched_lines(shown, printed.replace("370", "369")) == shown[0]
    assert unmatched_lines(shown, printed.replace('"9"', '"3"')) == shown[1]
    assert console_parts("$ a \\\n  b\nout\n$ c\n") == (["a \\\n  b", "c"], [["out"], []])
    assert _with_smoke_flags("edgelstm quickstart  # 80 s; CI runs it with --preset smoke\n") == (
        "edgelstm quickstart --preset smoke\n"
    )


def test_every_readme_example_runs_in_order(tmp_path: Path) -> None:
    """The whole README, top to bottom, in one folder (minutes: it trains, serves, scales)."""
    runner = ReadmeRunner.in_folder(tmp_path)
    for example in read_examples(README.read_text(encoding="utf-8")):
        if example.lang in RUN and example.not_run is None:
            runner.run(example)
