"""Progress a person can watch in the Prefect UI: a progress artifact (0–100) per flow run."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

Progress = Callable[[float], None]


EVERY = 1.0  # seconds between updates: each is a call to the Prefect API, and chunks can be quick


def progress_artifact(description: str) -> Progress:
    """A Prefect progress artifact (0–100) for this run, and the function that moves it (at most
    once every ``EVERY`` seconds, except to reach 100)."""
    artifact_id = create_progress_artifact(progress=0.0, description=description)
    last = [0.0, time.monotonic()]

    def report(percent: float) -> None:
        percent = round(min(max(percent, 0.0), 100.0), 1)
        now = time.monotonic()
        if percent != last[0] and (percent == 100.0 or now - last[1] >= EVERY):
            last[:] = percent, now
            update_progress_artifact(artifact_id, percent)

    return report


def scaled(progress: Progress, start: float, end: float) -> Progress:
    return lambda percent: progress(start + (end - start) * percent / 100)


async def latest_progress(client: PrefectClient, run_ids: list[UUID]) -> dict[UUID, float]:
    """The latest percent reported by each flow run's progress artifact."""
    if not run_ids:
        return {}
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=run_ids), type=ArtifactFilterType(any_=["progress"])
        )
    )
    found: dict[UUID, float] = {}
    for artifact in sorted(artifacts, key=lambda a: a.updated or a.created):
        if artifact.flow_run_id and isinstance(artifact.data, int | float):
            found[artifact.flow_run_id] = float(artifact.data)
    return found
