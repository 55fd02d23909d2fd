"""Sets up the test project once: settings module, a fresh SQLite file, migrations, users."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from typing import Any

import pytest

_tmp = tempfile.mkdtemp(prefix="moetrack-django-")
atexit.register(shutil.rmtree, _tmp, True)
os.environ["MOETRACK_TEST_DJANGO_DB"] = os.path.join(_tmp, "db.sqlite3")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integrations.django.project.settings"

import django  # noqa: E402

from moetrack import _api  # noqa: E402

django.setup()
# The app's ready() configured a default client (without credentials: the tests bring an
# emulator). Leave none behind, so tests collected with these start as they would alone.
_client, _api._default = _api._default, None
if _client is not None:
    _client.shutdown(1.0)

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

call_command("migrate", run_syncdb=True, verbosity=0)

_ids = itertools.count(1000)


@pytest.fixture(scope="session")
def first_user() -> Any:
    """The user with primary key 1: a one-character customer id the API refuses."""
    return User.objects.create_user(id=1, username="first", password=None)


@pytest.fixture
def make_user() -> Any:
    def make(username: str | None = None) -> Any:
        pk = next(_ids)
        return User.objects.create_user(id=pk, username=username or f"user{pk}", password=None)

    return make


@pytest.fixture
def loads() -> Any:
    """Reads how many times the auth backend loaded a user since the test started."""
    from tests.integrations.django.project.shop import backends

    start = backends.loads
    return lambda: backends.loads - start
