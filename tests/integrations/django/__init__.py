from ..._need import need_module

need_module("django")
