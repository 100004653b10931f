"""storepulse's command line and tooling: the CLI, the local stack and demo, the benchmark."""
