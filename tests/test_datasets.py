"""Datasets: versions from JSON, edits, uploads (CSV, JSONL) that store all or nothing, versions
from logs and from corrections, downloads that round-trip. On both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Server
from tests.helpers import BASE, assert_error

DATASETS = f"{BASE}/datasets"
ROWS = [
    {"inputs": {"question": "Where is my order?"}, "target": "It ships today."},
    {"inputs": {"question": "Can I return it?"}, "target": "Within 30 days."},
    {"inputs": {}, "messages": [{"role": "user", "content": "Hi"}], "target": "Hello!"},
]


def save(client: TestClient, name: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post(f"{DATASETS}/{name}/-/versions", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def upload(
    client: TestClient,
    name: str,
    content: bytes | str,
    filename: str = "data.jsonl",
    **form: str,
) -> Any:
    data = content.encode() if isinstance(content, str) else content
    return client.post(f"{DATASETS}/{name}/-/upload", files={"file": (filename, data)}, data=form)


def datapoints(client: TestClient, name: str, version: str = "latest") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{DATASETS}/{name}/-/versions/{version}/datapoints", params=params)
        assert response.status_code == 200, response.text
        found += response.json()["data"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


def versions(client: TestClient, name: str) -> list[str]:
    response = client.get(f"{DATASETS}/{name}/-/versions")
    assert response.status_code == 200, response.text
    return [v["id"] for v in response.json()["data"]]


def content(points: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    return [(p["inputs"], p["messages"], p["target"]) for p in points]


def test_a_json_save_creates_the_dataset_and_identical_content_finds_the_same_version(
    client: TestClient,
) -> None:
    first = save(
        client, "support/questions", {"datapoints": ROWS, "message": "first", "description": "FAQ"}
    )
    assert first["created"] is True and first["count"] == 3 and first["source"] == "api"
    assert len(first["id"]) == 12 and first["content_hash"].startswith(first["id"])
    assert (first["author"], first["message"], first["dataset"]) == (
        "key:tests",
        "first",
        "support/questions",
    )
    again = save(client, "support/questions", {"datapoints": ROWS, "message": "again"}, 200)
    assert again["created"] is False and again["id"] == first["id"]
    assert again["message"] == "first"  # the version is immutable

    points = datapoints(client, "support/questions")
    assert content(points) == [
        ({"question": "Where is my order?"}, None, "It ships today."),
        ({"question": "Can I return it?"}, None, "Within 30 days."),
        ({}, [{"role": "user", "content": "Hi"}], "Hello!"),
    ]
    assert [p["position"] for p in points] == [0, 1, 2]
    assert all(len(p["key"]) == 16 and p["source"] == "upload" for p in points)

    listed = client.get(DATASETS).json()["data"]
    assert [(d["name"], d["latest_version"], d["count"]) for d in listed] == [
        ("support/questions", first["id"], 3)
    ]
    shown = client.get(f"{DATASETS}/support/questions").json()
    assert shown["description"] == "FAQ" and shown["latest_version"] == first["id"]
    by_prefix = client.get(f"{DATASETS}/support/questions/-/versions/{first['id'][:5]}")
    assert by_prefix.json()["id"] == first["id"]
    assert client.get(f"{DATASETS}/support/questions/-/versions/latest").json()["count"] == 3

    # Key order and integral floats do not change the identity; content order does.
    reordered = [{"target": r["target"], **r} for r in ROWS]
    assert save(client, "support/questions", {"datapoints": reordered}, 200)["id"] == first["id"]
    swapped = save(client, "support/questions", {"datapoints": ROWS[::-1]})
    assert swapped["id"] != first["id"]
    assert versions(client, "support/questions") == [swapped["id"], first["id"]]
    events = client.get(f"{BASE}/audit").json()["data"]
    assert [
        (e["action"], e["details"]["version"], e["details"]["new_dataset"])
        for e in events
        if e["target"] == "dataset:support/questions"
    ] == [
        ("dataset_version.create", swapped["id"], False),
        ("dataset_version.create", first["id"], True),
    ]


def test_an_edit_adds_and_removes_by_key_and_leaves_the_base_unchanged(
    client: TestClient,
) -> None:
    base = save(client, "faq", {"datapoints": ROWS})["id"]
    before = datapoints(client, "faq")
    edited = save(
        client,
        "faq",
        {
            "base": base[:6],
            "remove": [before[1]["key"]],
            "add": [{"inputs": {"question": "Do you ship abroad?"}, "target": "Yes."}],
            "message": "drop returns",
        },
    )
    assert edited["created"] and edited["source"] == "edit" and edited["count"] == 3
    after = datapoints(client, "faq", edited["id"])
    assert [p["key"] for p in after[:2]] == [before[0]["key"], before[2]["key"]]
    assert after[2]["inputs"] == {"question": "Do you ship abroad?"}
    assert datapoints(client, "faq", base) == before  # versions are immutable
    assert versions(client, "faq") == [edited["id"], base]

    # Removing what the edit added again gives back the base's content minus one.
    undone = save(client, "faq", {"base": "latest", "remove": [after[2]["key"]]})
    assert undone["count"] == 2
    same = save(client, "faq", {"base": "latest", "add": [], "remove": []}, 200)
    assert same["id"] == undone["id"] and same["created"] is False

    error = assert_error(
        client.post(
            f"{DATASETS}/faq/-/versions",
            json={"base": "latest", "remove": [before[0]["key"], "0123456789abcdef"]},
        ),
        400,
        "invalid_input",
        "no datapoint with key 0123456789abcdef",
    )
    assert error["details"] == {"unknown": ["0123456789abcdef"]}
    assert versions(client, "faq") == [undone["id"], edited["id"], base]
    assert_error(
        client.post(f"{DATASETS}/nope/-/versions", json={"base": "latest", "remove": []}),
        404,
        "not_found",
        "No dataset 'nope'",
    )
    assert_error(
        client.post(f"{DATASETS}/faq/-/versions", json={"datapoints": ROWS, "base": "latest"}),
        422,
        "validation_error",
        "either 'datapoints'",
    )


def test_csv_upload(client: TestClient) -> None:
    csv_text = (
        "question,inputs.customer,messages,target\r\n"
        'Where is my order?,Ada,,"It ships\ntoday."\r\n'
        '"Hi, there",Bob,"[{""role"": ""user"", ""content"": ""Hi""}]",\r\n'
        "\r\n"
        "Refund?,Cy,,Yes\r\n"
    )
    response = upload(client, "uploads/csv", csv_text, "faq.csv", message="from a sheet")
    assert response.status_code == 201, response.text
    saved = response.json()
    assert (saved["source"], saved["count"], saved["message"]) == ("upload", 3, "from a sheet")
    assert content(datapoints(client, "uploads/csv")) == [
        ({"question": "Where is my order?", "customer": "Ada"}, None, "It ships\ntoday."),
        ({"question": "Hi, there", "customer": "Bob"}, [{"role": "user", "content": "Hi"}], None),
        ({"question": "Refund?", "customer": "Cy"}, None, "Yes"),
    ]
    # The format field wins over the file name; a byte-order mark is dropped.
    again = upload(client, "uploads/csv", "\ufeff" + csv_text, "export.txt", format="csv")
    assert again.status_code == 200 and again.json()["id"] == saved["id"]


def test_jsonl_upload(client: TestClient) -> None:
    lines = [
        json.dumps({"inputs": {"q": "a"}, "target": "A"}),
        "",
        json.dumps({"q": "b", "target": {"label": "B"}}),  # flat: other keys are inputs
        json.dumps({"messages": [{"role": "user", "content": "c"}], "target": "C"}),
        json.dumps({"inputs": {"q": "d"}, "source": "log", "log_id": "log-0001"}),
    ]
    response = upload(client, "uploads/jsonl", "\n".join(lines) + "\n", "data.jsonl")
    assert response.status_code == 201, response.text
    points = datapoints(client, "uploads/jsonl")
    assert content(points) == [
        ({"q": "a"}, None, "A"),
        ({"q": "b"}, None, {"label": "B"}),
        ({}, [{"role": "user", "content": "c"}], "C"),
        ({"q": "d"}, None, None),
    ]
    assert [(p["source"], p["log_id"]) for p in points][-2:] == [
        ("upload", None),
        ("log", "log-0001"),
    ]
    assert (
        upload(client, "uploads/json", "\n".join(lines), "data.json").json()["id"]
        == response.json()["id"]
    )


MALFORMED = [
    pytest.param(b'{"q": "a"}\n{"q": \n', "d.jsonl", 2, "not valid JSON", id="bad-json"),
    pytest.param(b'{"q": "a"}\n\n[1, 2]\n', "d.jsonl", 3, "not a JSON object", id="not-object"),
    pytest.param(b'{"q": "a"}\n{"q": NaN}\n', "d.jsonl", 2, "NaN", id="nan"),
    pytest.param(b'{"inputs": 3}\n', "d.jsonl", 1, "'inputs' must be an object", id="inputs"),
    pytest.param(b"q,target\na,b\nc,d,e\n", "d.csv", 3, "3 fields", id="column-count"),
    pytest.param(b'q,t\na,"two\nlines"\nc\n', "d.csv", 4, "1 fields", id="after-multiline"),
    pytest.param(b"q,messages\na,[oops\n", "d.csv", 2, "'messages' cell", id="messages-json"),
    pytest.param(b'q,messages\na,"[1]"\n', "d.csv", 2, "list of chat messages", id="messages"),
    pytest.param(b"q,target\na,b\n\xff\xfe,c\n", "d.csv", 3, "not UTF-8", id="not-utf8"),
    pytest.param(b"", "d.jsonl", 1, "the file is empty", id="empty"),
    pytest.param(b"q,target\n", "d.csv", 2, "no rows", id="header-only"),
    pytest.param(b"q,q\na,b\n", "d.csv", 1, "repeats", id="duplicate-column"),
    pytest.param(b'{"q": "a\\u0000"}\n', "d.jsonl", 1, "NUL", id="nul"),
    pytest.param(b"{}\n" * 100_001, "d.jsonl", 100_001, "more than 100,000", id="too-many"),
]


@pytest.mark.parametrize(("data", "filename", "line", "reason"), MALFORMED)
def test_a_malformed_upload_names_its_line_and_stores_nothing(
    client: TestClient, data: bytes, filename: str, line: int, reason: str
) -> None:
    error = assert_error(
        upload(client, "broken", data, filename), 400, "invalid_input", f"Line {line}: ", reason
    )
    assert error["details"][0]["line"] == line and reason in error["details"][0]["reason"]
    assert_error(client.get(f"{DATASETS}/broken"), 404, "not_found")


def test_a_bad_file_leaves_an_existing_dataset_as_it_was_and_lists_twenty_problems(
    client: TestClient,
) -> None:
    kept = save(client, "kept", {"datapoints": ROWS})["id"]
    lines = ['{"q": "ok"}'] + ["not json"] * 30
    error = assert_error(
        upload(client, "kept", "\n".join(lines)), 400, "invalid_input", "Line 2: ", "30 problems"
    )
    assert [p["line"] for p in error["details"]] == list(range(2, 22))
    assert versions(client, "kept") == [kept]
    assert_error(upload(client, "kept", "q\na\n", "data.xlsx"), 400, "invalid_input", "format=csv")
    assert_error(
        client.post(f"{DATASETS}/kept/-/upload", data={"message": "no file"}),
        400,
        "invalid_input",
        "form field 'file'",
    )


def test_an_upload_over_the_body_limit_is_refused(client: TestClient, server: Server) -> None:
    limit = server.settings.max_body_bytes
    line = json.dumps({"q": "x" * 1000}) + "\n"
    too_big = line * (limit // len(line) + 1)
    assert_error(upload(client, "huge", too_big), 413, "body_too_large")
    assert_error(client.get(f"{DATASETS}/huge"), 404, "not_found")


def log(client: TestClient, **body: Any) -> str:
    response = client.post(f"{BASE}/logs", json=body)
    assert response.status_code == 201, response.text
    uid: str = response.json()["id"]
    return uid


def give(client: TestClient, log_id: str, name: str, value: Any, **body: Any) -> None:
    response = client.post(
        f"{BASE}/logs/{log_id}/feedback", json={"name": name, "value": value, **body}
    )
    assert response.status_code == 201, response.text


def from_logs(client: TestClient, name: str, status: int = 201, **body: Any) -> Any:
    response = client.post(f"{DATASETS}/{name}/-/from-logs", json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_from_logs_keeps_provenance_respects_filters_and_skips_withheld_and_failed_logs(
    client: TestClient,
) -> None:
    tag = {"metadata": {"team": "eu"}}
    liked = log(client, inputs={"q": "liked"}, output="Good answer.", **tag)
    disliked = log(client, inputs={"q": "disliked"}, output="Bad answer.", **tag)
    chat = log(client, messages=[{"role": "user", "content": "Hi"}], output="Hello!", **tag)
    log(client, inputs={"q": "failed"}, error="timeout", **tag)
    log(client, inputs={"q": "elsewhere"}, output="x", metadata={"team": "us"})
    give(client, liked, "rating", "up")
    give(client, disliked, "rating", "down")
    changed = client.patch(f"{BASE}/projects/default", json={"content_capture": "with_consent"})
    assert changed.status_code == 200, changed.text
    withheld = log(client, inputs={"q": "private"}, output="secret", **tag)
    give(client, withheld, "rating", "up")

    up = from_logs(client, "from/up", filters={"feedback": ["up"]}, message="liked ones")
    assert (up["source"], up["count"], up["skipped"], up["skipped_reasons"]) == (
        "logs",
        1,
        1,
        {"withheld": 1},
    )
    [point] = datapoints(client, "from/up")
    assert (point["inputs"], point["target"], point["source"], point["log_id"]) == (
        {"q": "liked"},
        "Good answer.",
        "log",
        liked,
    )

    team = from_logs(client, "from/team", filters={"metadata": {"team": "eu"}})
    assert team["count"] == 3 and team["skipped_reasons"] == {"withheld": 1, "error": 1}
    points = datapoints(client, "from/team")
    assert [p["log_id"] for p in points] == [chat, disliked, liked]  # newest first
    assert (points[0]["inputs"], points[0]["messages"]) == ({}, [{"role": "user", "content": "Hi"}])

    bare = from_logs(
        client, "from/bare", filters={"metadata": {"team": "eu"}}, target="none", limit=2
    )
    assert bare["count"] == 2
    assert [p["target"] for p in datapoints(client, "from/bare")] == [None, None]

    assert_error(
        client.post(
            f"{DATASETS}/from/none/-/from-logs", json={"filters": {"metadata": {"team": "mars"}}}
        ),
        400,
        "invalid_input",
        "no logs match these filters",
    )
    assert_error(
        client.post(f"{DATASETS}/from/none/-/from-logs", json={"filters": {"error": True}}),
        400,
        "invalid_input",
        "no logs match these filters",
        "1 matched but were skipped (1 error)",
    )
    assert_error(
        client.post(f"{DATASETS}/from/none/-/from-logs", json={"filters": {"prompt": "nope"}}),
        404,
        "not_found",
    )
    assert_error(client.get(f"{DATASETS}/from/none"), 404, "not_found")


def test_from_corrections_uses_the_corrected_text(client: TestClient) -> None:
    corrected = log(client, inputs={"q": "day"}, output="It ships Monday.")
    log(client, inputs={"q": "plain"}, output="Untouched.")
    twice = log(client, inputs={"q": "twice"}, output="Draft.")
    give(client, corrected, "correction", "It ships Tuesday.", end_user="u-1")
    give(client, twice, "correction", "First fix.", end_user="u-2")
    give(client, twice, "correction", "Second fix.", end_user="u-2")

    saved = from_logs(client, "fixes", target="correction")
    assert (saved["source"], saved["count"], saved["skipped"]) == ("corrections", 2, 0)
    points = datapoints(client, "fixes")
    assert [(p["inputs"], p["target"], p["source"], p["log_id"]) for p in points] == [
        ({"q": "twice"}, "Second fix.", "correction", twice),
        ({"q": "day"}, "It ships Tuesday.", "correction", corrected),
    ]
    again = from_logs(client, "fixes", 200, target="correction")
    assert again["id"] == saved["id"] and again["created"] is False


def test_a_fine_tuning_set_takes_corrections_over_outputs_and_drops_duplicates(
    client: TestClient,
) -> None:
    liked = log(client, inputs={"q": "plain"}, output="Fine as it is.")
    repeat = log(client, inputs={"q": "plain"}, output="Fine as it is.")  # same content
    fixed = log(client, inputs={"q": "day"}, output="It ships Monday.")
    for log_id in (liked, repeat, fixed):
        give(client, log_id, "rating", "up")
    give(client, fixed, "correction", "It ships Tuesday.")

    saved = from_logs(client, "tuning", filters={"feedback": ["up"]}, target="corrected")
    assert (saved["source"], saved["count"], saved["skipped_reasons"]) == (
        "logs",
        2,
        {"duplicate": 1},
    )
    points = datapoints(client, "tuning")
    assert [(p["inputs"], p["target"], p["source"], p["log_id"]) for p in points] == [
        ({"q": "day"}, "It ships Tuesday.", "correction", fixed),
        ({"q": "plain"}, "Fine as it is.", "log", repeat),  # the newest of the two
    ]


def test_a_dataset_exports_as_openai_fine_tuning_jsonl_through_a_prompt(
    client: TestClient,
) -> None:
    saved = client.post(
        f"{BASE}/prompts/orders/extract/-/versions",
        json={
            "provider": "local",
            "model": "smollm2-135m",
            "messages": [
                {"role": "system", "content": "Extract JSON."},
                {"role": "user", "content": "{{ text }}"},
            ],
        },
    )
    assert saved.status_code == 201, saved.text
    version = saved.json()["id"]
    save(
        client,
        "orders",
        {
            "datapoints": [
                {"inputs": {"text": "2 mugs"}, "target": '{"qty":2}'},
                {"inputs": {"text": "1 lamp"}, "target": {"qty": 1}},
            ]
        },
    )
    url = f"{BASE}/fine-tunes/-/export"
    response = client.get(
        url, params={"dataset": "orders", "prompt": "orders/extract", "version": version}
    )
    assert response.status_code == 200, response.text
    assert "openai.jsonl" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {
        "messages": [
            {"role": "system", "content": "Extract JSON."},
            {"role": "user", "content": "2 mugs"},
            {"role": "assistant", "content": '{"qty":2}'},
        ]
    }
    assert lines[1]["messages"][-1] == {"role": "assistant", "content": '{"qty": 1}'}
    save(client, "untargeted", {"datapoints": [{"inputs": {"text": "x"}}]})
    assert_error(
        client.get(
            url, params={"dataset": "untargeted", "prompt": "orders/extract", "version": version}
        ),
        400,
        "invalid_input",
        "has no target",
    )
    assert_error(
        client.get(url, params={"dataset": "orders", "prompt": "orders/extract"}),
        404,
        "not_found",
        "production",
    )


def test_downloads_round_trip(client: TestClient) -> None:
    csv_text = 'question,customer,messages,target\nWhere?,Ada,,"Here, now"\nWhen?,Bob,,\n'
    saved = upload(client, "trip", csv_text, "trip.csv").json()

    as_csv = client.get(f"{DATASETS}/trip/-/versions/{saved['id']}/download?format=csv")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == f'attachment; filename="trip-{saved["id"]}.csv"'
    header = as_csv.text.splitlines()[0].split(",")
    assert sorted(header) == ["inputs.customer", "inputs.question", "messages", "target"]
    back = upload(client, "trip", as_csv.content, "trip.csv")
    assert back.status_code == 200 and back.json()["id"] == saved["id"], back.text

    as_jsonl = client.get(f"{DATASETS}/trip/-/versions/latest/download")
    assert as_jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert lines[1] == {
        "inputs": {"question": "When?", "customer": "Bob"},
        "messages": None,
        "target": None,
        "source": "upload",
        "log_id": None,
    }
    assert upload(client, "trip", as_jsonl.content).json()["id"] == saved["id"]

    # From logs, JSON lines keep the provenance through a download and an upload.
    uid = log(client, inputs={"n": 1}, output="one")
    made = from_logs(client, "logged", filters={"metadata": {}}, limit=1)
    exported = client.get(f"{DATASETS}/logged/-/versions/latest/download").text
    assert json.loads(exported)["log_id"] == uid and json.loads(exported)["source"] == "log"
    reloaded = upload(client, "logged-copy", exported)
    assert reloaded.json()["id"] == made["id"]
    assert datapoints(client, "logged-copy")[0]["log_id"] == uid


def test_roles_unknown_names_and_bad_references(client: TestClient, server: Server) -> None:
    save(client, "roles", {"datapoints": ROWS})
    viewer = server.client(server.key(role="viewer", name="viewer"))
    assert_error(
        viewer.post(f"{DATASETS}/roles/-/versions", json={"datapoints": ROWS[:1]}),
        403,
        "forbidden",
        "needs 'member'",
    )
    assert_error(upload(viewer, "roles", '{"q": 1}\n'), 403, "forbidden")
    assert_error(viewer.post(f"{DATASETS}/roles/-/from-logs", json={}), 403, "forbidden")
    assert len(versions(viewer, "roles")) == 1  # and viewers read
    member = server.client(server.key(role="member", name="member"))
    assert save(member, "roles", {"datapoints": ROWS[:1]})["author"] == "key:member"

    assert_error(client.get(f"{DATASETS}/unknown"), 404, "not_found", "No dataset 'unknown'")
    assert_error(client.get(f"{DATASETS}/unknown/-/versions"), 404, "not_found")
    assert_error(
        client.get(f"{DATASETS}/roles/-/versions/abcdef123456"),
        404,
        "not_found",
        "no version 'abcdef123456'",
    )
    assert_error(client.get(f"{DATASETS}/roles/-/versions/abc"), 400, "invalid_input", "4")
    assert_error(
        client.get(f"{DATASETS}/roles/-/versions/XYZW/datapoints"), 400, "invalid_input", "hex"
    )
    assert_error(
        client.post(f"{DATASETS}/bad//name/-/versions", json={"datapoints": ROWS}),
        400,
        "invalid_path",
        "Dataset name",
    )
    assert_error(
        client.post(f"{DATASETS}/empty/-/versions", json={"datapoints": []}),
        400,
        "invalid_input",
        "at least one datapoint",
    )
    assert_error(
        client.post(
            f"{DATASETS}/nan/-/versions",
            content=b'{"datapoints": [{"inputs": {"x": NaN}}]}',
            headers={"Content-Type": "application/json"},
        ),
        422,
        "validation_error",
    )
    assert_error(
        client.get(f"{DATASETS}/roles/-/versions/latest/datapoints", params={"cursor": "zz"}),
        400,
        "invalid_input",
        "cursor",
    )
