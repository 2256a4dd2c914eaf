"""Relaying upstream replies to the client: stream encoders and text filters."""
