"""An auth backend that counts how often a user is loaded (to prove the binding is lazy)."""

from __future__ import annotations

import threading
from typing import Any

from django.contrib.auth.backends import ModelBackend

_lock = threading.Lock()
loads = 0


class CountingBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        global loads
        with _lock:
            loads += 1
        return super().get_user(user_id)
