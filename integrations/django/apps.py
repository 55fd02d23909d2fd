"""The app that configures moetrack from ``settings.MOETRACK`` when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class MoetrackConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Calls :func:`moetrack.init` with the client options of ``settings.MOETRACK``.

    Listed in ``INSTALLED_APPS`` as ``"moetrack.integrations.django"`` (or this class's
    dotted path). Leave it out to call ``moetrack.init()`` yourself.
    """

    name = "moetrack.integrations.django"
    label = "moetrack"
    verbose_name = "moetrack"
    default = True

    def ready(self) -> None:
        """Django's start-up hook: ``moetrack.init(**client_options())``."""
        import moetrack

        from . import client_options

        moetrack.init(**client_options())
