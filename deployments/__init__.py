"""Every deployment Sluice serves, declared in one place, and the runner that serves them."""

from __future__ import annotations

from prefect import serve

from blocks.search_engine import register_engine_blocks
from flows.index_lifecycle import FLOWS

DEPLOYMENT = "sluice"
TASK_TAG = "sluice-task"  # marks the flow runs the /task API created and lists


def deployment_name(action: str) -> str:
    """``flow-name/deployment-name`` of the deployment that runs ``action``."""
    return f"{FLOWS[action].name}/{DEPLOYMENT}"


def lifecycle_deployments() -> list:
    return [
        flow.to_deployment(name=DEPLOYMENT, tags=["sluice", "index-lifecycle"], description=flow.description)
        for flow in FLOWS.values()
    ]


def serve_all(limit: int = 8) -> None:
    """Register the block types and every deployment, then run flow runs until stopped (blocks)."""
    register_engine_blocks()
    serve(*lifecycle_deployments(), limit=limit)
