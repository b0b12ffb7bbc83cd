"""The demo web page (``electra demo``; the optional demo extra)."""
