"""storepulse command line and local stack orchestration."""
