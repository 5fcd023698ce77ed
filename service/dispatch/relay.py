"""A background thread that re-sends outbox messages that never reached the broker."""

from __future__ import annotations

import logging
import threading

from service.dispatch.service import relay_pending

log = logging.getLogger(__name__)


class Relay(threading.Thread):
    def __init__(self, interval_s: float = 5.0) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.interval_s = interval_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sent = relay_pending()
                if sent:
                    log.info("relay re-sent %d outbox message(s)", sent)
            except Exception:  # DB or broker away: try again next tick
                log.warning("outbox relay failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
