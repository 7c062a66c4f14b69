"""lossradar's metrics service: FastAPI, SQLAlchemy, alerts, notifiers, Prometheus. No torch."""
