"""Alert notices without a monitoring stack: a JSON POST (Slack-compatible ``{"text"}``)
to the URL ``alerts.url_env`` names, when a write is dead-lettered, a system's polls
keep failing, or a 429 defers a system for long. At most one notice per kind and system
per ``min_interval_s``; sending never blocks or fails the work that raised it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from app.config.schema import AlertSettings

log = logging.getLogger("syncgate.alerts")


class Alerter:
    """Sends notices (``notify``); without settings or a URL it sends nothing."""

    def __init__(
        self,
        settings: AlertSettings | None,
        url: str | None,
        *,
        client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.url = url
        self.client = client
        self.monotonic = monotonic
        self._last: dict[tuple[str, str], float] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._poll_failures: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.settings is not None and bool(self.url)

    def notify(self, kind: str, system: str, text: str) -> bool:
        """Send a notice in the background, unless one of this kind and system went out
        within ``min_interval_s``; returns whether it is sent."""
        if not self.enabled or self.settings is None:
            return False
        now = self.monotonic()
        last = self._last.get((kind, system))
        if last is not None and now - last < self.settings.min_interval_s:
            return False
        self._last[(kind, system)] = now
        task = asyncio.get_running_loop().create_task(self._send(kind, system, text))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return True

    def poll_result(self, system: str, error: str | None) -> None:
        """Count consecutive failed polls; at ``poll_failures`` in a row, a notice."""
        if self.settings is None:
            return
        if error is None:
            self._poll_failures.pop(system, None)
            return
        failures = self._poll_failures.get(system, 0) + 1
        self._poll_failures[system] = failures
        if failures >= self.settings.poll_failures:
            self.notify(
                "poll_failing", system, f"{system}: {failures} polls in a row failed: {error}"
            )

    def deferred(self, system: str, seconds: float, reason: str) -> None:
        """A 429 holds ``system`` back for ``seconds``: a notice past ``deferral_s``."""
        if self.settings is not None and seconds > self.settings.deferral_s:
            self.notify(
                "deferred", system, f"{system}: writes held back {seconds:.0f} s by a 429: {reason}"
            )

    async def _send(self, kind: str, system: str, text: str) -> None:
        assert self.url is not None
        body = {"text": f"Syncgate: {text}", "kind": kind, "system": system}
        try:
            if self.client is None:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.post(self.url, json=body)
            else:
                response = await self.client.post(self.url, json=body)
            if response.status_code >= 300:
                log.warning("alert refused", extra={"kind": kind, "status": response.status_code})
        except httpx.HTTPError as exc:  # the receiver is down: log, never fail the work
            log.warning("alert not sent", extra={"kind": kind, "error": type(exc).__name__})

    async def close(self) -> None:
        """Wait for notices on their way (a few seconds at most)."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=10)
