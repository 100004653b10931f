"""Secrets out of everything shown: URL userinfo and secret query values masked, in logs too."""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["MASK", "install_log_redaction", "redact_text", "redact_url"]

MASK = "***"

# Query parameters and key=value pairs whose value is a secret: password, passwd, pwd, token,
# secret, and names holding one of them (access_token, sasl_password, client_secret).
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|token|secret)[A-Za-z0-9_.-]*"
_SECRET_QUERY = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&;#]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)", re.DOTALL)
# In free text: scheme:// and everything up to the last @ before the next whitespace.
_TEXT_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)\S*@")
_TEXT_PAIR = re.compile(rf"(?i)(?<![A-Za-z0-9_.-])({_SECRET_NAME}=)[^\s&;,'\"]+")


def _redact_query(text: str) -> str:
    return _SECRET_QUERY.sub(rf"\g<1>{MASK}", text)


def redact_url(url: str) -> str:
    """The URL with its userinfo replaced by *** and secret query values masked.

    Scheme, host, port, path and the other query parameters stay, so the address can still be
    recognised. The userinfo ends at the last @ of the URL, not at the first / ? or # as a URL
    parser would say: a password holding one of those unencoded would otherwise show in part
    (an @ later in a path or query hides a little more than needed, never a secret). Without a
    scheme, anything before the last @ is masked too.
    """
    match = _SCHEME.fullmatch(url)
    if match is None:
        _, at, host = url.rpartition("@")
        return f"{MASK}@{_redact_query(host)}" if at else _redact_query(url)
    scheme, rest = match.groups()
    if not rest.startswith("/"):  # unix:///path has an empty authority: no userinfo
        _, at, host = rest.rpartition("@")
        if at:
            rest = f"{MASK}@{host}"
    return scheme + _redact_query(rest)


def redact_text(text: str) -> str:
    """Free text (a log line, an error message) with every URL's userinfo and secret pair masked.

    A URL ends at whitespace, so its userinfo is everything from scheme:// to the last @ before
    it; key=value pairs with a secret name (password=, token=, ...) lose their value.
    """
    if "@" not in text and "=" not in text:
        return text  # the common case, kept cheap: a log record of every process passes here
    text = _TEXT_USERINFO.sub(rf"\g<1>{MASK}@", text)
    return _TEXT_PAIR.sub(rf"\g<1>{MASK}", text)


_FORMATTER = logging.Formatter()
_installed = False


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit: logging reports that when it emits the record
        return
    shown = redact_text(message)
    if shown != message:
        record.msg, record.args = shown, None
    if record.exc_info and record.exc_info[0] is not None:
        trace = _FORMATTER.formatException(record.exc_info)
        if (masked := redact_text(trace)) != trace:
            record.exc_text = masked  # formatters use exc_text when it is set
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def install_log_redaction() -> None:
    """From now on every log record of this process is redacted as it is made (idempotent).

    A record factory rather than a handler filter: Faust and mode replace the root handlers
    when the worker starts, the factory stays whatever handlers are configured later.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
