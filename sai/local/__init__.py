"""The local runtime behind `sai up`: one machine, real processes.

  platform.py         the supervisor: starts Triton, the functions and the gateway, restarts what dies
  gateway.py          the OpenFaaS-compatible gateway (aiohttp): /function, /async-function, /system
  async_calls.py      the gateway's persisted async-call queue and callback delivery
  function_runner.py  serves one function as the python3-http-debian template's index.py does
  stack.py            stack.yml's functions and their faas-cli-style build contexts
  triton_server.py    the tritonserver binary from the nvidia-pytriton wheel, on CPU
  s3_server.py        the local S3 server (moto) for object-classify
  s3_auth.py          ... which answers only requests signed with its generated credentials
  s3_events.py        S3 bucket notifications as MinIO sends them
  processes.py        process groups and identities, scratch folders, restart back-off, log tails, waiting
  triggers/           schedules, message topics (NATS JetStream), PostgreSQL changes, as OpenFaaS's connectors

Nothing here imports sai.cli: the CLI drives the runtime, never the other way round.
"""
