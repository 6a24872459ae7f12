"""Mail to SMS text: the body pipeline between the SMTP intake and the SMS encoder.

:func:`extract` takes the raw bytes of one message and returns the text to
send (:class:`Extracted`), or raises :class:`NoTextError`. See
docs/mail-to-sms.md for the pipeline and its options.
"""

from mailsms.mail.parse import BodyOptions, Extracted, NoTextError, extract

__all__ = ["BodyOptions", "Extracted", "NoTextError", "extract"]
