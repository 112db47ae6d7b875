"""What every answer is made of, the app's and the transport's own refusals alike: the headers, the JSON
encoding, the shape of an error, and the 500's message. The app and the transport both import it; neither
imports the other for it."""

import json

JSON_HEADERS = [  # on every answer, the app's and the server's own errors alike
    ("Content-Type", "application/json; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
    # Nothing here may be stored: a cached /health would report a dead service as healthy, and every
    # answer echoes the deployment's environment, which changes with the next deploy.
    ("Cache-Control", "no-store"),
]

INTERNAL_ERROR = "internal_error"  # the `error` code of a 500, whichever side failed
INTERNAL_ERROR_MESSAGE = "The server failed to answer; the error is logged. Retry, and report it if it persists."


def error_payload(code: str, message: str) -> dict[str, str]:
    """The body of every error answer: a code to match on and a message that says what to do."""
    return {"error": code, "message": message}


def encode(payload: dict[str, str]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
