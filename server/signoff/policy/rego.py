"""regopy, loaded so that its native library and libstdc++ share one allocator.

regopy's `librego_shared.so` links snmalloc and exports its own `operator new` and
`operator delete`. When libstdc++ is already loaded privately (RTLD_LOCAL) before it, as
it is in the server (grpcio and protobuf's upb load it first), libstdc++'s own code keeps
glibc's allocator while rego's code uses snmalloc. Memory allocated on one side and
released on the other is never returned: about 14 KB per policy evaluation, for as long
as the process runs. Making libstdc++ global before regopy loads binds rego's
`operator new`/`delete` to libstdc++'s, so the whole process uses one allocator whatever
was imported first. This belongs upstream (rego-cpp should not export its allocator from
a shared library); until then, every import of regopy in signoff goes through here.
"""

import ctypes
import os
import sys

if sys.platform.startswith("linux") and "regopy" not in sys.modules:
    try:
        ctypes.CDLL("libstdc++.so.6", mode=os.RTLD_GLOBAL)
    except OSError:  # a libstdc++ under another name: nothing was loaded before, nothing to bind
        pass

from regopy import Interpreter, RegoError

__all__ = ["Interpreter", "RegoError"]
