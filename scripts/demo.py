#!/usr/bin/env python3
"""./demo.sh's player: the seed article's scenario with readable output.

The scenario itself is tests/python/article.py — the same code the end-to-end
test runs; this file only prints what it reports, and cleans up.

    .venv/bin/python scripts/demo.py [--mode auto|netns|loopback] [--keep]

`auto` (default): network namespaces and the real 169.254.170.23 as root,
loopback addresses otherwise. `--keep` leaves the work directory (logs,
SQLite database) behind. Exit status: 0 done, 1 a step failed (the last line
names it), 130 interrupted (Ctrl-C or SIGTERM); in every case every process
the demo started is stopped and its namespaces and files are removed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

import article  # noqa: E402


class Printer(article.Reporter):
    """Prints the scenario step by step."""

    def __init__(self, color: bool):
        self.bold = "\033[1m" if color else ""
        self.dim = "\033[2m" if color else ""
        self.green = "\033[32m" if color else ""
        self.red = "\033[31m" if color else ""
        self.reset = "\033[0m" if color else ""

    def _print(self, text: str = "") -> None:
        print(text, flush=True)

    def step(self, number, total, name):
        self._print(f"\n{self.bold}==> [{number}/{total}] {name}{self.reset}")

    def command(self, where, display):
        self._print(f"  {self.dim}[{where}]{self.reset} $ {display}")

    def output(self, text):
        for line in text.splitlines():
            self._print(f"    {line}")

    def note(self, text):
        self._print(f"  {text}")

    def check(self, text):
        self._print(f"  {self.green}ok{self.reset} {text}")

    def failed(self, text):
        self._print(f"\n{self.red}{text}{self.reset}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM clean up (even when started with SIGINT ignored, as
    # a background job of a non-interactive shell is).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    out = Printer(color=sys.stdout.isatty())
    workdir = Path(tempfile.mkdtemp(prefix="podid-demo-"))
    started = time.monotonic()
    failure: str | None = None
    interrupted = False
    scenario = None
    try:
        scenario = article.Scenario(workdir, out, mode=args.mode)
        out.note(f"work directory $WORK = {workdir}")
        scenario.run()
    except KeyboardInterrupt:
        interrupted = True
    except article.StepFailed as e:
        failure = str(e)
    except Exception as e:  # noqa: BLE001 - before the first step (e.g. --mode netns without root)
        failure = f"set-up: {type(e).__name__}: {e}"
    finally:
        # Cleaning up must not be cut short by a second Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if scenario is not None:
            if failure:
                for name, path in scenario.logs().items():
                    tail = [line for line in _tail(path, 8) if line.strip()]
                    if tail:
                        out.note(f"-- last lines of {name}'s log:")
                        out.output("\n".join(tail))
            scenario.close()
        if args.keep:
            out.note(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if interrupted:
        where = f" during step {scenario.current[0]} ({scenario.current[1]})" if scenario and scenario.current else ""
        out.failed(f"demo interrupted{where}: every process it started is stopped, its namespaces and files removed")
        return 130
    if failure:
        out.failed(f"demo failed at {failure}")
        return 1
    stopped = ", ".join(f"{name} ({rc})" for name, rc in scenario.exit_codes.items())
    out._print()
    out.note(f"stopped (exit status): {stopped}")
    if scenario.namespace_names():
        out.note(f"deleted network namespaces: {', '.join(scenario.namespace_names())}")
    unclean = {name: rc for name, rc in scenario.exit_codes.items() if rc != 0}
    if unclean:
        out.failed(f"demo failed at shutdown: not every process exited cleanly: {unclean}")
        return 1
    out._print(f"\n{out.bold}done in {time.monotonic() - started:.0f}s{out.reset}: the article's scenario on podid "
               f"({scenario.mode} mode): one trust policy, two clusters.")
    return 0


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
