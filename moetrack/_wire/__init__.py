"""What MoEngage receives: records and their kinds, validation, the API facts, encoding and
packing into request bodies, the HTTP helpers, and the Transport seam.

Nothing here knows about queues, threads or Redis; :mod:`moetrack._pipeline` builds on it.
"""
