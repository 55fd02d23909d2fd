"""Everything that talks to Redis (the ``moetrack[redis]`` extra): the connection (URLs, key
names, partitions), the shared limiter, the backlog writer, and the relay.

This is the only package that imports redis-py.
"""
