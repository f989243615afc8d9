"""The one user-facing error type: a one-line message that names the problem and the fix."""


class ScaleCrafterError(ValueError):
    """Bad input or missing resources. The CLI prints the message alone and exits with code 2."""
