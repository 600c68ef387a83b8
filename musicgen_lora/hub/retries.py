"""Hub calls that survive a flaky network: transient errors retried with back-off, offline mode and missing tokens
caught before any work.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from huggingface_hub import constants, get_token
from huggingface_hub.errors import HfHubHTTPError

from ..errors import UserError, one_line

T = TypeVar("T")

logger = logging.getLogger(__name__)


TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


def _token_available(token: str | None) -> bool:

    return bool(token or get_token())


def check_can_push(token: str | None) -> None:

    if constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise UserError("cannot push to the Hub: HF_HUB_OFFLINE is set; unset it (or set push_to_hub false)")
    if not _token_available(token):
        raise UserError(
            "pushing to the Hub needs a token; set HF_TOKEN, run `hf auth login`, or set hub_token (never saved to a "
            "file)"
        )


def _is_transient(err: BaseException) -> bool:

    if isinstance(err, HfHubHTTPError):
        response = getattr(err, "response", None)
        return response is not None and response.status_code in TRANSIENT_STATUS
    transport: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for module in ("httpx2", "httpx"):
        try:
            transport += (__import__(module).TransportError,)
        except (ImportError, AttributeError):
            pass
    return isinstance(err, transport)


def _describe(err: BaseException) -> str:
    response = getattr(err, "response", None)
    status = f"HTTP {response.status_code}: " if getattr(response, "status_code", None) else ""
    return status + (one_line(str(err))[:200] or type(err).__name__)


def call_with_retries(
    action: Callable[[], T], what: str, advice: str, attempts: int = 4, wait_seconds: float = 2.0
) -> T:
    """``action()``, retried with back-off (``wait_seconds``, doubled each time) on transient Hub errors (HTTP 408,
    429, 5xx, dropped connections), ``attempts`` tries in all.

    Raises:
        UserError: one line, ``"<what> failed (<why>); <advice>"``, for a permanent error or the last transient one.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure of the client becomes the one-line error below
            if not _is_transient(err):
                raise UserError(f"{what} failed ({_describe(err)}); {advice}") from None
            if attempt == attempts:
                raise UserError(f"{what} failed {attempts} times ({_describe(err)}); {advice}") from None
            delay = wait_seconds * 2 ** (attempt - 1)
            logger.warning(
                "Push attempt %d/%d failed (%s); retrying in %.1f s", attempt, attempts, _describe(err), delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def hub_offline() -> bool:

    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
