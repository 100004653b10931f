"""storepulse stream processing: event contract, settings, funnel math and the Faust worker."""
