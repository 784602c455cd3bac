"""Teacher strategies of :class:`~lightning_skd.SelfKDCallback`: a frozen snapshot, or cached past predictions."""

from lightning_skd.callbacks.teachers.base import BatchRows, Teacher
from lightning_skd.callbacks.teachers.cached import CachedTeacher
from lightning_skd.callbacks.teachers.snapshot import SnapshotTeacher

__all__ = ["BatchRows", "CachedTeacher", "SnapshotTeacher", "Teacher"]
