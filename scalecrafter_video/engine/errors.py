"""The one user-facing error type: a one-line message that names the problem and the fix."""


class ScaleCrafterError(ValueError):
    """Bad input or missing resources. The CLI prints the message alone and exits with code 2."""


def one_line(message: object) -> str:
    """An error message as the user sees it (the CLI after `scv: error:`, the web app in the page):
    its whitespace folded into one line."""
    return " ".join(str(message).strip().split()) or "unknown error"
