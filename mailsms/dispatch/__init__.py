"""Dispatch: claim queued messages, pick a carrier, submit, and record what happened."""
