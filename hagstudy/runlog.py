"""How a notebook reports: hagstudy's log lines and real warnings as plain stdout text, everything in a log file.

A rendered notebook shows whatever reaches stderr as a pink box, and Python's default handlers send
every log line and warning there: a reader cannot tell an alarm from chatter. So ``study.start`` calls
``setup``: log records (hagstudy's, transformers', datasets', and Python warnings, which are routed
through logging) go to stdout in a compact form, ``training: adapter ... is current``, with each
warning numbered (``warning #2 hag: zero_shot (coinflip): ...``) so a reader sees how many there were;
the same records, with times and levels, go to the run's log file. Only third-party warnings known
to be harmless (``HARMLESS``) are dropped, each matched by message, category and module.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hagstudy.files import shown

# (message regex, category, module regex) of warnings dropped everywhere: narrow on purpose, so a new
# warning from the same library still surfaces.
HARMLESS: tuple[tuple[str, str, str], ...] = (
    # tqdm.autonotebook warns on import in a kernel without ipywidgets; progress bars are off in
    # notebooks anyway (study._quiet_progress_bars), so there is nothing to update.
    ("IProgress not found", "tqdm.std.TqdmWarning", r"tqdm\."),
    # transformers 5 deprecated the property PEFT and TRL still read when they wrap a model; it
    # warns on each wrap (every adapter load) and changes nothing we compute. Drop when peft/trl
    # read ``is_activation_checkpointing``.
    ("`is_gradient_checkpointing` is deprecated", "builtins.FutureWarning", r"transformers\.modeling_utils"),
)
# Library root loggers that attach their own stderr handler: their records go through ours instead.
_LIBRARIES = ("transformers", "datasets")
FULL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _category(dotted: str) -> type[Warning] | None:
    """The warning class named ``module.Name``, or None when its library is not installed."""
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except ImportError:
        return None


def quiet_harmless_warnings() -> None:
    """Install the ``HARMLESS`` filters (idempotent: ``warnings`` replaces an identical filter)."""
    for message, dotted, module in HARMLESS:
        category = _category(dotted)
        if category is not None:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)


class _Stdout(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is at emit time (a kernel or pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass


class _Compact(logging.Formatter):
    """``training: message``; warnings numbered, ``warning #3 hag: message``; the count lives here."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings = 0

    def format(self, record: logging.LogRecord) -> str:
        name = record.name.rpartition(".")[2] if record.name.startswith("hagstudy.") else record.name  # the module, not its wing
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            self.warnings += 1
            return f"{record.levelname.lower()} #{self.warnings} {name}: {text}"
        return f"{name}: {text}"


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """Python warnings as log records: one line naming the category and where it was raised."""
    logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, message, _where(filename), lineno)


def _where(filename: str) -> str:
    """A warning's file: root-relative inside the study, else relative to the sys.path entry holding it."""
    text = shown(filename)
    if not Path(text).is_absolute():
        return text
    for entry in sorted((p for p in sys.path if p), key=len, reverse=True):
        try:
            return str(Path(filename).relative_to(entry))
        except ValueError:
            continue
    return text


@dataclass
class RunLog:
    """Where this run's full log is, and how many warnings it has shown so far."""

    path: Path
    _formatter: _Compact

    @property
    def warnings(self) -> int:
        return self._formatter.warnings


def setup(log_path: Path, level: int = logging.INFO) -> RunLog:
    """Send log records and warnings to stdout (compact) and to ``log_path`` (full; rewritten per run).

    Calling it again (a notebook's first cell rerun) replaces the handlers it installed before and
    starts a new count; handlers others put on the root logger (pytest's caplog) are left alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hagstudy", False):
            root.removeHandler(handler)
            handler.close()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    compact = _Compact()
    stdout = _Stdout()
    stdout.setFormatter(compact)
    file = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    file.setFormatter(logging.Formatter(FULL_FORMAT))
    for handler in (stdout, file):
        handler._hagstudy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name in _LIBRARIES:
        _through_root(name)
    quiet_harmless_warnings()
    warnings.showwarning = _showwarning
    return RunLog(log_path, compact)


def _through_root(library: str) -> None:
    """Drop a library's own stderr handler so its records reach the root logger's handlers (ours)."""
    if library == "transformers":
        try:
            from transformers.utils import logging as tlog
        except ImportError:
            return
        tlog.disable_default_handler()  # configures its root logger first, so it will not re-add one
        tlog.enable_propagation()
    logger = logging.getLogger(library)
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__):
            logger.removeHandler(handler)
    logger.propagate = True
