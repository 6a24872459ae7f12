"""mailsms: a self-hosted bridge between email and SMS."""

__version__ = "0.1.0"
