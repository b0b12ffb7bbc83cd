"""The one exception type for problems a user can fix (bad file, bad config, bad shape).

The CLI prints its message as a single line and exits with code 2; library callers can catch it.
"""


class UserError(Exception):
    """A problem caused by the user's input; the message names the thing and the fix."""
