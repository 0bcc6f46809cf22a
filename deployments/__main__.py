"""``python -m deployments``: the runner process `sluice up` starts."""

from deployments import serve_all

if __name__ == "__main__":
    serve_all()
