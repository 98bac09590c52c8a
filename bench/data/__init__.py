"""Bundled and installed text: the timing sentences and the BBC News corpus splits."""
