"""Metrics, the consumer-group lag exporter and the Prometheus/Alertmanager configuration."""
