"""Intake: SMTP and LMTP (smtp.py), later IMAP; the shared decisions in accept.py."""
