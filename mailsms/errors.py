"""The exception tree of mailsms.

::

    MailsmsError
     +-- ConfigError             bad or unknown configuration key (names the key and the file)
     +-- AddressError            a recipient that is not a phone number in one of our domains
     +-- StoreError              the store could not commit (SMTP 451 4.3.0)
     +-- CarrierError            raised by carrier drivers from submit()
          +-- TemporaryFailure   retry later with backoff (throttled, timeout, connection lost)
          +-- PermanentFailure   never retry (invalid destination, rejected content)

Failures are values the dispatcher acts on: the class says whether to retry.
"""

from __future__ import annotations


class MailsmsError(Exception):
    """Base of every error mailsms raises on purpose."""


class ConfigError(MailsmsError):
    """A configuration problem, already phrased for the operator."""


class AddressError(MailsmsError, ValueError):
    """A recipient address that cannot become an E.164 number."""


class StoreError(MailsmsError):
    """The store is unreachable or refused the write; nothing was committed."""


class CarrierError(MailsmsError):
    """A carrier could not take a message. ``code`` is the carrier's own error code."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    def __str__(self) -> str:
        return f"{self.text} (code {self.code})" if self.code else self.text


class TemporaryFailure(CarrierError):
    """Worth retrying: the carrier or the link is busy, slow or down."""


class PermanentFailure(CarrierError):
    """Not worth retrying: the carrier refused this message for good. ``opt_out`` says the
    refusal is the recipient's own STOP (Twilio 21610, Telnyx 40300): the dispatcher then
    puts the number on the opt-out list, as for a delivery report saying so."""

    def __init__(self, text: str, code: str | None = None, *, opt_out: bool = False) -> None:
        super().__init__(text, code)
        self.opt_out = opt_out
