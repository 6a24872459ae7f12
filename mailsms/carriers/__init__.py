"""Carrier drivers: the contract in :mod:`mailsms.carriers.base`, one module per driver."""
