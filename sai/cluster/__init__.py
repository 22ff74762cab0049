"""`sai cluster`: operate the Kubernetes platform (charts/serverless-ai) from Python.

Reads go through the official `kubernetes` client and the `kserve` SDK (`reads.py`); changes go
through Helm (`helm.py`). The logic that interprets what the API returns (status, cold starts,
prerequisites) works on plain API dicts, so it is tested offline against recorded objects; only
`reads.py` talks to an API server. Everything here needs an explicit kubeconfig
(`kubeconfig.py`): the clients' silent default, localhost:8080, is where `sai up`'s gateway listens.

Install with the `cluster` extra: `pip install -e '.[cluster]'` (`make setup` does).
"""

RELEASE = "serverless-ai"
NAMESPACE = "serverless-ai"
FUNCTION_NAMESPACE = "openfaas-fn"
TRITON_COMPONENT = "app.kubernetes.io/component=triton"  # label on the Triton pods (chart)


def isvc_name(release: str = RELEASE) -> str:
    """The chart names the InferenceService <release>-triton (sai.tritonName)."""
    return f"{release}-triton"


def predictor_ksvc_name(release: str = RELEASE) -> str:
    """KServe (Knative mode) names the predictor's Knative Service <isvc>-predictor."""
    return f"{isvc_name(release)}-predictor"
