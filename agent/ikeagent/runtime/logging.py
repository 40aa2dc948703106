"""Logging for the agent: one stderr handler, a level from ``--log-level`` or the config, and a
redaction filter as a backstop (secrets are kept out of log calls in the first place: PSKs and
keys have hiding reprs, and nothing logs them)."""

from __future__ import annotations

import logging
import re
import sys

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# key=value / key: value where the key names a secret; long runs of hex or base64
_NAMED = re.compile(
    r"(?i)\b(secret|psk|password|passphrase|private[_ ]?key|sk_[a-z]{1,2}|skeyid\w*|"
    r"encr_key|integ_key|nonce_key)\b(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|b'[^']*'|\S+)"
)
_LONG_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{40,}\b")
_LONG_B64 = re.compile(r"\b0s[A-Za-z0-9+/]{16,}={0,2}")


def redact(text: str) -> str:
    """Replace what looks like key material in ``text`` with ``<redacted>``."""
    text = _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)
    text = _LONG_B64.sub("<redacted>", text)
    return _LONG_HEX.sub("<redacted>", text)


class RedactingFilter(logging.Filter):
    """Formats each record's message once and redacts it (including exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def setup_logging(level: str = "info", stream: object = None) -> logging.Handler:
    """Configure the root logger with one handler; returns it (tests remove it again)."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_ikeagent", False)]:
        root.removeHandler(old)
    handler._ikeagent = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS[level])
