"""The Prometheus rules and the Prometheus and Alertmanager configs the stack and compose use."""
