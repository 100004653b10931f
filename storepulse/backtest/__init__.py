"""`storepulse backtest`: the alert rules judged by a real Prometheus over simulated days."""
