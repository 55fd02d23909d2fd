"""``moetrack import``: input formats, resume state and the rejects file, the file source,
the progress display, and the run itself, on the same sender as the app clients.
"""
