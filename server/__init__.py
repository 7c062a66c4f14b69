"""lossradar's metrics service: FastAPI + SQLAlchemy, alerts, notifiers, Prometheus. Never imports torch."""
