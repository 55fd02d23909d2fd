from ..._need import need_module

need_module("celery")
need_module("redis")
