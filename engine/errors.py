"""The one error type a user is meant to read."""


class SproutError(ValueError):
    """A problem with the user's input or request, stated in plain words.

    The CLI prints its message on one line and exits with status 2; the app shows it
    as an error box. Anything else that escapes is a bug.
    """
