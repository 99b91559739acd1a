"""The error type for mistakes a user can fix; the entry points print it as one line, exit 2."""


class UserError(Exception):
  """A mistake the user can fix (a flag value, missing data, an unwritable folder): no traceback."""
