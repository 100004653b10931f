"""Print the event JSON Schema (`python -m streams.contract.schema > docs/event.schema.json`)."""

from __future__ import annotations

import json

from streams.contract.events import event_json_schema

if __name__ == "__main__":
    print(json.dumps(event_json_schema(), indent=2, sort_keys=True))
