"""Every read `sai cluster` makes, through the official `kubernetes` client and the `kserve` SDK.

Each method returns the object as the API serves it (a plain JSON dict, camelCase keys), so the
logic in status.py / coldstart.py / prereqs.py works the same on live objects and on the recorded
ones the offline tests use (`tests/cluster_objects/`, served by a class with these methods).
Nothing here falls back to a default kubeconfig: the client is built from the one given.
"""

from __future__ import annotations

from collections.abc import Iterator

from sai.cluster.kubeconfig import Kubeconfig

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
KNATIVE_SERVICE = ("serving.knative.dev", "v1", "services")
KNATIVE_REVISION = ("serving.knative.dev", "v1", "revisions")


class ClusterReads:
    def __init__(self, kubeconfig: Kubeconfig):
        from kubernetes import client, config

        # An explicit Configuration, filled from this file only: never the module-wide default
        # (whose host is localhost) and never the in-cluster fallback.
        cfg = client.Configuration()
        config.load_kube_config(
            config_file=str(kubeconfig.path), context=kubeconfig.context, client_configuration=cfg, persist_config=False
        )
        self.kubeconfig = kubeconfig
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.crds_api = client.ApiextensionsV1Api(self.api)
        self._kserve = None

    # -- helpers
    def _plain(self, obj) -> dict:
        return self.api.sanitize_for_serialization(obj)

    @staticmethod
    def _missing(exc) -> bool:
        return getattr(exc, "status", None) == 404

    def _get(self, fn, *args):
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args)
        except ApiException as exc:
            if self._missing(exc):
                return None
            raise

    # -- KServe (the SDK's own client, built from the same kubeconfig file)
    @property
    def kserve(self):
        if self._kserve is None:
            from kserve import KServeClient

            self._kserve = KServeClient(config_file=str(self.kubeconfig.path), context=self.kubeconfig.context)
            # KServeClient builds its APIs on the module-wide default configuration it has just
            # loaded from our file; point them at our client explicitly as well.
            from kubernetes import client

            self._kserve.api_instance = client.CustomObjectsApi(self.api)
            self._kserve.core_api = client.CoreV1Api(self.api)
        return self._kserve

    def isvc(self, namespace: str, name: str) -> dict | None:
        try:
            return self.kserve.get(name, namespace=namespace)
        except RuntimeError as exc:  # the SDK wraps ApiException in RuntimeError
            if "(404)" in str(exc) or "Not Found" in str(exc):
                return None
            raise

    def isvc_ready(self, namespace: str, name: str) -> bool:
        return bool(self.kserve.is_isvc_ready(name, namespace=namespace))

    def watch_custom(
        self, group_version_plural: tuple[str, str, str], namespace: str, name: str, timeout_s: int
    ) -> Iterator[dict]:
        """Objects of one name as a watch delivers them (ADDED/MODIFIED), until timeout_s."""
        from kubernetes import watch

        group, version, plural = group_version_plural
        w = watch.Watch()
        for event in w.stream(
            self.custom.list_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, int(timeout_s)),
        ):
            if event["type"] in ("ADDED", "MODIFIED"):
                yield event["object"]

    def watch_pods(self, namespace: str, selector: str, timeout_s: int) -> Iterator[tuple[str, dict]]:
        from kubernetes import watch

        w = watch.Watch()
        for event in w.stream(
            self.core.list_namespaced_pod, namespace, label_selector=selector, timeout_seconds=max(1, int(timeout_s))
        ):
            yield event["type"], self._plain(event["object"])

    # -- Knative
    def custom_object(self, gvp: tuple[str, str, str], namespace: str, name: str) -> dict | None:
        return self._get(self.custom.get_namespaced_custom_object, *gvp[:2], namespace, gvp[2], name)

    def ksvc(self, namespace: str, name: str) -> dict | None:
        return self.custom_object(KNATIVE_SERVICE, namespace, name)

    def revision(self, namespace: str, name: str) -> dict | None:
        return self.custom_object(KNATIVE_REVISION, namespace, name)

    # -- core objects
    def pods(self, namespace: str, selector: str) -> list[dict]:
        return self._plain(self.core.list_namespaced_pod(namespace, label_selector=selector)).get("items", [])

    def events(self, namespace: str, field_selector: str = "") -> list[dict]:
        return self._plain(self.core.list_namespaced_event(namespace, field_selector=field_selector or None)).get("items", [])

    def deployments(self, namespace: str, selector: str = "") -> list[dict]:
        return self._plain(self.apps.list_namespaced_deployment(namespace, label_selector=selector or None)).get("items", [])

    def deployment(self, namespace: str, name: str) -> dict | None:
        obj = self._get(self.apps.read_namespaced_deployment, name, namespace)
        return self._plain(obj) if obj is not None else None

    def job(self, namespace: str, name: str) -> dict | None:
        obj = self._get(self.batch.read_namespaced_job, name, namespace)
        return self._plain(obj) if obj is not None else None

    def configmap(self, namespace: str, name: str) -> dict | None:
        obj = self._get(self.core.read_namespaced_config_map, name, namespace)
        return self._plain(obj) if obj is not None else None

    def namespace(self, name: str) -> dict | None:
        obj = self._get(self.core.read_namespace, name)
        return self._plain(obj) if obj is not None else None

    def nodes(self) -> list[dict]:
        return self._plain(self.core.list_node()).get("items", [])

    def crds(self) -> list[dict]:
        return self._plain(self.crds_api.list_custom_resource_definition()).get("items", [])
