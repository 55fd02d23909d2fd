"""One process's delivery: the record queue, the in-memory source, the Source protocol, the
sender, the worker thread, the Limiter protocol with the local limiter, and the retry policy.

It builds on :mod:`moetrack._wire` and never the reverse; it never imports the optional
wings (:mod:`moetrack.redis`, :mod:`moetrack.bulk`, :mod:`moetrack.cli`).
"""
