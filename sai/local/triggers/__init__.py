"""Triggers beyond HTTP: schedules, message topics and database changes, the OpenFaaS connector way.

  annotations.py  the `topic` and `schedule` annotations, as cron-connector and connector-sdk read them
  cron.py         cron-connector's schedule grammar (robfig/cron v3) and when runs are due
  topics.py       nats-server with JetStream, and the connector that calls a function per message
  postgres.py     rows changed in PostgreSQL -> messages (a transactional outbox and its relay)
  invoke.py       the connectors' view of the gateway: list functions, call one
  runtime.py      the owner the platform starts and stops (`Triggers`, `TriggerSettings`)

docs/triggers.md says what each delivers, and how the chart does the same on a cluster.
"""
