"""Command line: ``python -m bench {codecs,datasets,metrics,run,worker,report,figure4,verify,tools,crops,train}``.

The top layer; its modules: this one (``main``: errors as one line and exit statuses), ``parser``
(``build_parser``), ``commands`` (one function per subcommand; ``run``'s in ``run``), ``argtypes`` (numeric
option types), and the commands that are scripts of their own: ``train``, ``perf`` (``make perf``) and ``gpu_check``.

Only light modules are imported here: each command imports what it needs (pandas, matplotlib,
the selected codecs' libraries, torch) when it runs, so ``--help``, usage errors and ``datasets``
answer at once. User errors (``BenchError``) are printed once, in ``main``, with exit status 2;
``--debug`` shows their traceback instead.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from pathlib import Path

from ..errors import BenchError
from .commands import EXIT_INTERRUPTED, EXIT_USAGE
from .parser import BD_METHODS, build_parser

__all__ = ["BD_METHODS", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # undecodable file names and adapter messages print escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(args.interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (sqlite3.Error, OSError) as exc:
        if args.debug or not storage_error(exc):
            raise
        print(f"error: {storage_message(exc, getattr(args, 'out', None) or getattr(args, 'results', None))}",
              file=sys.stderr)
        return EXIT_USAGE


def storage_error(exc: BaseException) -> bool:
    """A full disk, a read-only file system or a damaged store: the user's to fix, said in one line."""
    if isinstance(exc, sqlite3.Error):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def storage_message(exc: BaseException, folder: str | None) -> str:
    from ..store import DB_NAME, storage_problem

    return storage_problem(exc, Path(folder or ".") / DB_NAME)


if __name__ == "__main__":
    sys.exit(main())
