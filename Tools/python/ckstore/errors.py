"""The exceptions the ckstore package raises."""

from __future__ import annotations

__all__ = ["CKStoreError", "PushError", "UnsupportedByBinary"]


class CKStoreError(RuntimeError):
    """A ckstore command failed. ``returncode`` is its exit status, ``stderr`` its error output."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class PushError(CKStoreError):
    """A background push failed (``step`` says which one)."""

    def __init__(self, message: str, step: int, returncode: int | None = None, stderr: str = ""):
        super().__init__(message, returncode, stderr)
        self.step = step


class UnsupportedByBinary(CKStoreError):
    """The ckstore binary in use lacks a feature this call needs (e.g. ``put --parts``)."""
