"""The stream worker process: Faust app, batch processor, dead letters and worker metrics."""
