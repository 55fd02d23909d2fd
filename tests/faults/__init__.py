"""A fault-injection kit: a loopback TCP proxy that misbehaves on demand, and helpers that
freeze (SIGSTOP), wake (SIGCONT) and kill -9 processes. Used by the Redis and relay tests and
by the nemesis test of the scale-out path."""
