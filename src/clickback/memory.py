"""Handing freed memory back to the system."""

from __future__ import annotations

import contextlib
import ctypes


def give_back() -> None:
    """Asks glibc to return the free parts of its heaps to the system (`malloc_trim`): it
    keeps what Python freed in them otherwise, and the process stays as large as its
    largest moment. Nothing where the C library is not glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
