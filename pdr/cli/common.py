"""What the command-line tools share: logging, and one clear line for bad input."""
from __future__ import annotations

import functools
import logging
import sys

from tqdm import tqdm

from ..errors import PDRError


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(verbose: bool = False) -> None:
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
