"""What every command line shares: the user's lines shown, library chatter hidden unless --verbose.

    if __name__ == "__main__":          # at the top of a CLI module, before jax/tensorflow imports
      cli.quiet_native_logs()
    ...
    def main(argv=None):
      args = parser.parse_args(argv)
      cli.setup_logging(args.verbose)
      with cli.errors_as_messages(args.verbose):
        ...

Shown: translate's own log lines (progress, results, paths written, warnings such as a skipped bad
image) and errors, as one line each (`HH:MM:SS message`, `HH:MM:SS WARNING: message`). Hidden unless
--verbose: INFO lines of the libraries (orbax's and clu's through absl, jax's backend probe 'Unable to
initialize backend tpu', TensorFlow's) and the C++ logs of TensorFlow (oneDNN, CUDA, absl's
'InitializeLog' note) and XLA. Their warnings and errors still show. With --verbose every INFO line is
shown, and an error prints its traceback.

This module imports nothing heavy: `quiet_native_logs` must run before tensorflow is imported, since
TF reads TF_CPP_MIN_LOG_LEVEL once, at import.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys

# Loggers of libraries whose INFO lines are chatter for a user (warnings and errors still show).
LIBRARY_LOGGERS = ("absl", "jax", "jaxlib", "tensorflow", "tensorflow_datasets", "orbax", "etils",
                   "clu", "flax", "h5py", "matplotlib", "PIL", "fsspec", "urllib3", "asyncio")
VERBOSE_FLAG = "--verbose"


def quiet_native_logs(argv: list[str] | None = None) -> bool:
  """Without --verbose in `argv` (default sys.argv): TF_CPP_MIN_LOG_LEVEL=2 (unless the user set it;
  TF's C++ warnings and INFO hidden), and tensorflow's import, whenever it happens, runs with the
  stderr file descriptor closed: TF >= 2.20 logs through absl before its log level is read (the
  'oneDNN custom operations are on' and 'All log messages before absl::InitializeLog()' lines). An
  error importing TF is still raised (and shown) as usual. With --verbose, TF_CPP_MIN_LOG_LEVEL=0.
  Call before tensorflow is imported. Returns whether verbose."""
  argv = sys.argv if argv is None else argv
  verbose = any(a in (VERBOSE_FLAG, VERBOSE_FLAG + "=true", VERBOSE_FLAG + "=True") for a in argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
  if not verbose and "tensorflow" not in sys.modules and not any(
      isinstance(f, _QuietImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietImport("tensorflow"))
  return verbose


@contextlib.contextmanager
def _stderr_closed():
  """File descriptor 2 points to /dev/null inside (C++ libraries write there directly)."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietImport(importlib.abc.MetaPathFinder):
  """Imports the top-level module `name` (and all it imports) with stderr closed, once. Stays in
  sys.meta_path until the module is actually executed: libraries probe for tensorflow with
  `importlib.util.find_spec` without importing it."""

  def __init__(self, name: str):
    self.name = name
    self._busy = False

  def find_spec(self, fullname, path=None, target=None):
    if fullname != self.name or self._busy:
      return None
    self._busy = True
    try:
      spec = importlib.util.find_spec(fullname)
    finally:
      self._busy = False
    if spec is None or spec.loader is None:
      return spec
    loader, finder = spec.loader, self

    class Quiet(importlib.abc.Loader):
      def create_module(self, spec):
        return loader.create_module(spec)

      def exec_module(self, module):
        if finder in sys.meta_path:
          sys.meta_path.remove(finder)
        with _stderr_closed():
          loader.exec_module(module)

    spec.loader = Quiet()
    return spec


class _StderrHandler(logging.StreamHandler):
  """Writes to the current sys.stderr (not the one at creation: a CLI's main() may run in-process,
  e.g. under pytest, where sys.stderr is swapped per test)."""

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    del value


class _Formatter(logging.Formatter):
  """`HH:MM:SS message` for INFO, `HH:MM:SS LEVEL: message` otherwise."""

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record):
    text = super().format(record)
    if record.levelno != logging.INFO:
      stamp, _, rest = text.partition(" ")
      text = f"{stamp} {record.levelname}: {rest}"
    return text


def setup_logging(verbose: bool = False) -> None:
  """Root logger at INFO (translate's own lines), library loggers at WARNING (INFO with `verbose`),
  JAX's through its config (`jax_logging_level`, which also sets XLA's C++ log level). Lines go to
  stderr; under absl's app.run its handler is kept (with the short format unless `verbose`)."""
  root = logging.getLogger()
  root.setLevel(logging.INFO)
  handlers = [h for h in root.handlers if type(h).__name__ == "ABSLHandler"]
  if not handlers:
    handlers = [h for h in root.handlers if getattr(h, "_translate_cli", False)]
    for h in root.handlers:  # e.g. a library's logging.basicConfig(): each line once, from ours
      if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.__stderr__) \
          and h not in handlers:
        root.removeHandler(h)
  if not handlers:
    handler = _StderrHandler()
    handler._translate_cli = True  # noqa: SLF001 -- found again when called twice
    root.addHandler(handler)
    handlers = [handler]
  for handler in handlers:
    if not verbose or getattr(handler, "_translate_cli", False):
      handler.setFormatter(_Formatter())
  level = logging.INFO if verbose else logging.WARNING
  for name in LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(level)
  import jax
  jax.config.update("jax_logging_level", "INFO" if verbose else "WARNING")
  # jax's config adds its own handler to the 'jax' logger: do not print its lines twice
  logging.getLogger("jax").propagate = False
  logging.getLogger("jaxlib").propagate = False


@contextlib.contextmanager
def errors_as_messages(verbose: bool = False, kinds: tuple = (ValueError, OSError)):
  """Turns an error of `kinds` (translate's clear errors: bad input, a missing file) into one line on
  stderr and exit status 1; with `verbose` the traceback is kept."""
  try:
    yield
  except kinds as e:
    if verbose:
      raise
    sys.exit(f"error: {e}")


def add_verbose_argument(parser) -> None:
  """--verbose for an argparse command line."""
  parser.add_argument(VERBOSE_FLAG, action="store_true",
                      help="also show the libraries' INFO logs (orbax, absl, jax, TensorFlow) and "
                           "tracebacks")
