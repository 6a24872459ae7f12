"""Prometheus metrics, in a registry of the gateway's own (several gateways can share a
process in tests without their counters mixing)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter(
            "mailsms_messages_accepted", "Messages queued, by origin", ["origin"], registry=r
        )
        self.submitted = Counter(
            "mailsms_messages_submitted", "Messages accepted by a carrier", ["carrier"], registry=r
        )
        self.failed = Counter(
            "mailsms_messages_failed",
            "Messages that ended failed or expired",
            ["carrier", "state"],
            registry=r,
        )
        self.retried = Counter(
            "mailsms_submit_retries",
            "Temporary submit failures scheduled for retry",
            ["carrier"],
            registry=r,
        )
        self.smtp_replies = Counter(
            "mailsms_smtp_replies", "SMTP/LMTP replies sent, by code", ["code"], registry=r
        )
        self.imap_mail = Counter(
            "mailsms_imap_messages",
            "Messages read from IMAP mailboxes, by outcome (queued, duplicate, refused, deferred)",
            ["imap", "result"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "mailsms_queue_depth", "Messages in the store, by state", ["state"], registry=r
        )
        self.submit_latency = Histogram(
            "mailsms_accept_to_submit_seconds",
            "Time from acceptance to carrier submit",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 1, 5, 30, 300, 3600),
            registry=r,
        )

        self._reply_counters: dict[str, Counter] = {}

    def smtp_reply(self, code: str) -> None:
        """Count one reply; the labelled child is cached (``labels()`` takes a lock)."""
        child = self._reply_counters.get(code)
        if child is None:
            child = self._reply_counters[code] = self.smtp_replies.labels(code=code)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
