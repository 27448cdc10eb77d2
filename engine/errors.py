"""One error type for everything a user can get wrong: the CLI prints it as one line, exit 2."""


class UserError(Exception):
    """A problem with the user's input or environment, said in one line that names it."""

    exit_code = 2
