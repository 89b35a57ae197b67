"""How the entry points report a user's mistake: one or two lines on stderr and exit status 2, not a traceback.

    if __name__ == '__main__':
      user_errors.run(main)

User errors are what bad input makes the library raise: a typo'd or ill-typed flag or config override (absl and
ml_collections errors while the flags are parsed), a bad config value or unknown name (ValueError, with the valid
choices in its message), a dataset not prepared or a workdir without a run (FileNotFoundError, naming the command
to run), a usage mistake (app.UsageError) and a run stopped by a non-finite loss (FloatingPointError, naming the
step). `--verbose_errors`, or ATTENTION_JAX_VERBOSE_ERRORS=1, lets them through with their traceback. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

EXIT_USER_ERROR = 2
VERBOSE_ENV = 'ATTENTION_JAX_VERBOSE_ERRORS'
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, FloatingPointError, app.UsageError)
# While flags are parsed, ml_collections reports an unknown override field as AttributeError / KeyError and a
# config file that does not load as its own exception; all of them are the user's input.
PARSE_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, *USER_ERRORS)

_VERBOSE = flags.DEFINE_boolean('verbose_errors', False, 'Show the traceback of a user error (bad flag, config, '
                                f'missing data); also {VERBOSE_ENV}=1.')


def _verbose(argv) -> bool:
  if os.environ.get(VERBOSE_ENV, '') not in ('', '0', 'false', 'False'):
    return True
  if flags.FLAGS.is_parsed():
    return bool(_VERBOSE.value)
  return any(arg in ('--verbose_errors', '--verbose_errors=true', '--verbose_errors=True') for arg in argv)


def message(error: BaseException) -> str:
  """The error's own text on one line. A KeyError (ml_collections wraps one in AttributeError for an unknown
  override field) becomes "no config field 'x'" plus its suggestion."""
  while isinstance(error, AttributeError) and error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  if isinstance(error, (KeyError, AttributeError)) and error.args and isinstance(error.args[0], str):
    first, *rest = error.args[0].strip().split('\n')
    return ' '.join([f"no config field {first.strip().strip(chr(39))!r}." if rest or isinstance(error, KeyError)
                     else first, *rest])
  return ' '.join(str(error).split('\n'))


def fail(error: BaseException) -> None:
  """Prints `error: <message>` and how to see the traceback, then exits with EXIT_USER_ERROR."""
  print(f'error: {message(error)}', file=sys.stderr)
  print(f'(--verbose_errors or {VERBOSE_ENV}=1 shows the traceback)', file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def parse_flags(argv):
  """absl's flag parsing with user errors reported by `fail`."""
  try:
    return flags.FLAGS(argv)
  except PARSE_ERRORS as error:
    if _verbose(argv):
      raise
    fail(error)


def run(main) -> None:
  """`absl.app.run(main)` with user errors, at parse time and in main, reported in two lines with exit status 2."""
  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as error:
      if _verbose(argv):
        raise
      fail(error)
  app.run(guarded, flags_parser=parse_flags)
