"""What the entry points share: absl flag parsing and user errors as one line with exit status 2."""

import sys
from typing import Callable, List

from absl import app, flags, logging

from bonefrac.errors import UserError

USAGE_EXIT = 2


def fail(message: str) -> None:
  """Prints `error: message` on one line to stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USAGE_EXIT)


def _parse_flags(argv: List[str]) -> List[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl would print the flag help and exit 1
    fail(f"{e}. See --helpshort.")


def run(main: Callable[[List[str]], None]) -> None:
  """`absl.app.run(main)`, but bad flags and `UserError`s end with one line and exit status 2."""
  def guarded(argv):
    # TFDS logs every dataset it opens at INFO, and warns on a first build that the folder it
    # is about to fill has no dataset_info.json yet: noise for a user (--verbosity shows it).
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.ERROR)
    try:
      main(argv)
    except UserError as e:
      fail(str(e))
  app.run(guarded, flags_parser=_parse_flags)
