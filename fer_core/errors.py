"""The error every user-caused failure derives from.

A `FerError` is a problem the person running the program can fix (a bad file, dataset,
model card, setting or argument); its message says what is wrong and what to do, in one
line. The CLI prints it as ``error: <message>`` and exits with code 2; the pages show it.
Any other exception is a bug and keeps its traceback.

The subclasses live next to the code that raises them (`fer_core.config.ConfigError`,
`fer_core.images.ImageError`, `fer_core.video.VideoError`, `fer_core.data.DataError`,
`fer_core.card.CardError`, `fer_core.jobs.JobError`, `fer_core.export.ExportError`).
Most also derive from ValueError, so callers that catch ValueError keep working.
"""

from __future__ import annotations


class FerError(Exception):
    """A problem the user can fix; the message says what and what to do."""


class UsageError(FerError, ValueError):
    """Command-line arguments that do not go together, or name something that is not there."""
