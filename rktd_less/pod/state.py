"""The pod state enum and the one pure function that derives it from what is on disk."""

from __future__ import annotations

from enum import StrEnum


class PodState(StrEnum):
    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    DELETING = "deleting"
    EXITED_DELETING = "exited deleting"
    EXITED = "exited"
    EXITED_GARBAGE = "exited garbage"
    GARBAGE = "garbage"


def derive_state(phase: str, locked: bool) -> PodState:
    """rkt's table (reference §2.2): the phase directory plus whether someone holds the lock.

    ``locked`` means an exclusive non-blocking flock could not be taken.
    """
    match phase:
        case "embryo":
            return PodState.EMBRYO
        case "prepare":
            return PodState.PREPARING if locked else PodState.ABORTED_PREPARE
        case "prepared":
            return PodState.PREPARED
        case "run":
            return PodState.RUNNING if locked else PodState.EXITED
        case "exited-garbage":
            return PodState.EXITED_DELETING if locked else PodState.EXITED_GARBAGE
        case "garbage":
            return PodState.DELETING if locked else PodState.GARBAGE
    raise ValueError(f"unknown pod phase {phase!r}")


def is_exited(state: PodState) -> bool:
    return state in (PodState.EXITED, PodState.EXITED_GARBAGE, PodState.EXITED_DELETING)
