"""User-facing errors.

Anything raised as a :class:`UserError` is a problem with the user's input or
environment (a missing file, a bad checkpoint, an output folder that exists).
The CLI prints its message as one paragraph, without a traceback unless
``--verbose`` is given, and exits with a non-zero code.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message names the problem and the fix; shown without a traceback."""


class VideoError(UserError):
    """The video (or image folder) cannot be read."""


class CheckpointError(UserError):
    """A checkpoint cannot be loaded (missing, not a checkpoint, wrong keys or shapes)."""


class OutputExistsError(UserError):
    """The output folder exists and ``--overwrite`` was not given."""
