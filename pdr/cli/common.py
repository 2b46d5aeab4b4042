"""What the command-line tools share: logging, and one clear line for bad input."""
from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import PDRError


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def program(tool: str) -> str:
    """The name a tool's usage line shows: its console script's (``pdr-train``) when run as one, else
    ``tools/<tool>.py``."""
    name = Path(sys.argv[0]).name.removesuffix(".exe")
    return name if name.startswith("pdr-") else f"tools/{tool}.py"


class ArgumentParser(argparse.ArgumentParser):
    """One flag style for every tool: options are kebab-case (``--work-dir``, ``--img-h``); the snake_case
    spelling of each (``--img_h``, as earlier versions of some tools had it) is accepted and not shown."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        old = {o.replace("-", "_").replace("__", "--", 1): o for a in self._actions for o in a.option_strings
               if o.startswith("--") and "-" in o[2:]}
        renamed = []
        for i, arg in enumerate(args):
            if arg == "--":
                renamed += args[i:]
                break
            name, eq, value = arg.partition("=")
            renamed.append(old[name] + eq + value if name in old else arg)
        return super().parse_known_args(renamed, namespace)


def integer(low: int):
    """An argparse ``type``: an integer >= ``low``; anything else is refused in argparse's usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def setup_logging(verbose: bool = False, offline: bool = False) -> None:
    """pdr's log lines on stderr (clear of progress bars); ``offline`` (a tool's --offline): download nothing."""
    if offline:
        from ..metrics import set_offline

        set_offline()
    logger = logging.getLogger("pdr")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("[pdr] %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def friendly_errors(main):
    """Turn PDRError (bad config, data, checkpoint) into ``error: <message>`` and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except PDRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
            return 130

    return wrapper
