import json
from pathlib import Path

SPEC_FILE = Path(__file__).resolve().parents[2] / "openapi.json"


def test_committed_openapi_json_is_up_to_date(client):
    served = client.get("/openapi.json").get_json()
    committed = json.loads(SPEC_FILE.read_text())
    assert committed == served, "openapi.json is stale: run `make openapi` and commit it"
