"""storepulse traffic producers: synthetic generation and replay of recorded traffic."""
