"""moetrack next to segment-analytics-python and posthog: ``python -m tests.benchmarks``."""
