"""The datasets pages, in-process on both databases: the list, creating a dataset (upload, pasted
JSON, the logs matching a filter), browsing a version, editing datapoints into new versions."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Server
from tests.helpers import BASE

DATASETS = f"{BASE}/datasets"
UI = "/p/default/datasets"


def csrf(browser: TestClient) -> str:
    token: str = browser.headers["X-CSRF-Token"]
    return token


def versions(client: TestClient, name: str) -> list[dict[str, Any]]:
    response = client.get(f"{DATASETS}/{name}/-/versions")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def datapoints(client: TestClient, name: str, version: str = "latest") -> list[dict[str, Any]]:
    response = client.get(f"{DATASETS}/{name}/-/versions/{version}/datapoints")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def log(client: TestClient, **body: Any) -> str:
    response = client.post(f"{BASE}/logs", json=body)
    assert response.status_code == 201, response.text
    uid: str = response.json()["id"]
    return uid


def upload(browser: TestClient, name: str, text: str, filename: str) -> Any:
    return browser.post(
        f"{UI}/-/new",
        data={"mode": "upload", "name": name, "message": "first", "csrf_token": csrf(browser)},
        files={"file": (filename, text.encode(), "application/octet-stream")},
        follow_redirects=False,
    )


def test_upload_with_a_bad_line_names_it_and_saves_nothing_then_a_good_file_is_listed(
    client: TestClient, server: Server
) -> None:
    browser = server.browser()
    bad = '{"q": "one", "target": "1"}\n{"q": "two", "target": \n{"q": "three"}\n'
    refused = upload(browser, "ui/upload", bad, "points.jsonl")
    assert refused.status_code == 400
    assert "Line 2" in refused.text and "Nothing was stored" in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert 'value="ui/upload"' in refused.text  # what the user typed is kept
    assert client.get(f"{DATASETS}/ui/upload").status_code == 404

    good = "q,target\nwhat is 2+2?,4\ncapital of France?,Paris\n"
    saved = upload(browser, "ui/upload", good, "points.csv")
    assert saved.status_code == 303
    [version] = versions(client, "ui/upload")
    assert saved.headers["location"] == f"{UI}/ui/upload?version={version['id']}&saved=new"
    assert (version["count"], version["source"], version["message"]) == (2, "upload", "first")

    page = browser.get(saved.headers["location"])
    assert page.status_code == 200
    assert "capital of France?" in page.text and "Paris" in page.text
    assert "Versions never change" in page.text
    assert "/p/default/evaluations/-/new?dataset=ui%2Fupload" in page.text

    listing = browser.get(UI)
    assert listing.status_code == 200
    assert version["id"] in listing.text and ">ui/upload</a>" in listing.text
    assert "New dataset" in listing.text

    download = browser.get(f"{UI}/ui/upload/-/download?version={version['id']}&format=jsonl")
    assert download.status_code == 200
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert [line["target"] for line in lines] == ["4", "Paris"]
    assert browser.get(f"{UI}/ui/upload/-/download?format=csv").text.startswith("inputs.q,")


def test_pasted_json_array_and_bad_paste(client: TestClient, server: Server) -> None:
    browser = server.browser()
    body = {"mode": "paste", "name": "ui/pasted", "csrf_token": csrf(browser)}
    refused = browser.post(f"{UI}/-/new", data={**body, "content": '{"q": 1}\n[1, 2]'})
    assert refused.status_code == 400 and "Line 2" in refused.text
    empty = browser.post(f"{UI}/-/new", data={**body, "content": "  "})
    assert empty.status_code == 400 and "Paste JSON lines" in empty.text
    bad_name = browser.post(f"{UI}/-/new", data={**body, "name": "/bad//", "content": '{"q": 1}'})
    assert bad_name.status_code == 400 and "Dataset name" in bad_name.text
    assert client.get(f"{DATASETS}").json()["data"] == []

    content = json.dumps([{"inputs": {"q": "a"}, "target": "A"}, {"q": "b"}])
    saved = browser.post(f"{UI}/-/new", data={**body, "content": content}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert [p["inputs"] for p in datapoints(client, "ui/pasted")] == [{"q": "a"}, {"q": "b"}]


def test_a_viewer_sees_no_create_or_edit_and_is_refused(client: TestClient, server: Server) -> None:
    client.post(f"{DATASETS}/ui/seen/-/versions", json={"datapoints": [{"inputs": {"q": "x"}}]})
    email = "viewer@example.com"
    added = client.post(f"{BASE}/members", json={"email": email, "role": "viewer"})
    assert added.status_code == 201, added.text
    viewer = server.browser(email)
    assert "New dataset" not in viewer.get(UI).text
    page = viewer.get(f"{UI}/ui/seen")
    assert (
        page.status_code == 200 and "Add a datapoint" not in page.text and ">Edit<" not in page.text
    )
    assert viewer.get(f"{UI}/-/new").status_code == 403
    refused = viewer.post(
        f"{UI}/-/new",
        data={
            "mode": "paste",
            "name": "ui/nope",
            "content": '{"q": 1}',
            "csrf_token": csrf(viewer),
        },
    )
    assert refused.status_code == 403
    assert client.get(f"{DATASETS}/ui/nope").status_code == 404


def test_from_logs_previews_the_filter_then_saves_with_provenance(
    client: TestClient, server: Server
) -> None:
    first = log(client, inputs={"q": "one"}, output="One.", end_user="alice")
    second = log(client, inputs={"q": "two"}, output="Two.", end_user="alice")
    log(client, inputs={"q": "failed"}, error="timeout", end_user="alice")
    log(client, inputs={"q": "other"}, output="Other.", end_user="bob")
    browser = server.browser()

    preview = browser.get(f"{UI}/-/new?from=logs&end_user=alice")
    assert preview.status_code == 200
    count = re.search(r'id="match-count"><strong>(\d+)</strong>', preview.text)
    assert count is not None and count.group(1) == "3"
    assert "2</strong> datapoints, 1 error left out" in preview.text
    assert "Two." in preview.text and "Other." not in preview.text
    unknown = browser.get(f"{UI}/-/new?from=logs&judgment=helpful>=4")
    assert "Unknown evaluator &#39;helpful&#39;" in unknown.text
    trace = browser.get(f"{UI}/-/new?from=logs&trace_id=abc")
    assert "leave the trace filter out" in trace.text
    assert f"/p/default/logs/{second}" in preview.text
    bad_filter = browser.get(f"{UI}/-/new?from=logs&error=maybe&since=yesterday")
    assert bad_filter.status_code == 200
    assert "Use true" in bad_filter.text and "Give a date and time" in bad_filter.text

    body = {"mode": "logs", "name": "ui/from-logs", "end_user": "alice", "target": "output"}
    saved = browser.post(
        f"{UI}/-/new", data={**body, "csrf_token": csrf(browser)}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    assert "skipped=1" in saved.headers["location"]
    points = datapoints(client, "ui/from-logs")
    assert [(p["inputs"], p["target"], p["log_id"]) for p in points] == [
        ({"q": "two"}, "Two.", second),
        ({"q": "one"}, "One.", first),
    ]
    page = browser.get(saved.headers["location"])
    assert f"/p/default/logs/{first}" in page.text and "1 matching log was left out" in page.text

    nothing = browser.post(
        f"{UI}/-/new",
        data={**body, "name": "ui/none", "end_user": "carol", "csrf_token": csrf(browser)},
    )
    assert nothing.status_code == 400 and "Nothing to save" in nothing.text
    bad_limit = browser.post(
        f"{UI}/-/new", data={**body, "name": "ui/none", "limit": "0", "csrf_token": csrf(browser)}
    )
    assert bad_limit.status_code == 400 and "A whole number" in bad_limit.text
    assert client.get(f"{DATASETS}/ui/none").status_code == 404


def test_from_logs_takes_repeated_filters_and_refuses_a_bad_one_on_save(
    client: TestClient, server: Server
) -> None:
    voted = log(client, inputs={"q": "voted"}, output="Voted.", end_user="dave")
    both = log(client, inputs={"q": "both"}, output="Both.", end_user="dave")
    log(client, inputs={"q": "none"}, output="None.", end_user="dave")
    for uid, body in [
        (voted, {"name": "rating", "value": "up"}),
        (both, {"name": "rating", "value": "up"}),
        (both, {"name": "comment", "value": "Nice."}),
    ]:
        given = client.post(f"{BASE}/logs/{uid}/feedback", json=body)
        assert given.status_code in (200, 201), given.text
    browser = server.browser()
    preview = browser.get(f"{UI}/-/new?from=logs&end_user=dave&feedback=up&feedback=comment")
    assert preview.status_code == 200, preview.text
    count = re.search(r'id="match-count"><strong>(\d+)</strong>', preview.text)
    assert count is not None and count.group(1) == "1"  # all must hold
    assert "Both." in preview.text and "Voted." not in preview.text
    # the field and the save form carry both words, and the links repeat them
    assert 'name="feedback" value="up, comment"' in preview.text
    assert "feedback=up&amp;feedback=comment" in preview.text
    saved = browser.post(
        f"{UI}/-/new",
        data={
            "mode": "logs",
            "name": "ui/two-words",
            "end_user": "dave",
            "feedback": "up, comment",
            "target": "output",
            "csrf_token": csrf(browser),
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert [p["log_id"] for p in datapoints(client, "ui/two-words")] == [both]

    # a bad filter on save: the logs page's message, next to the field; nothing saved
    refused = browser.post(
        f"{UI}/-/new",
        data={
            "mode": "logs",
            "name": "ui/refused",
            "judgment": "exact>=high",
            "csrf_token": csrf(browser),
        },
    )
    assert refused.status_code == 400
    on_logs = re.search(
        r'id="judgment-error">(.*?)</span>',
        browser.get("/p/default/logs?judgment=exact>=high").text,
    )
    assert on_logs is not None and "must be a number" in on_logs.group(1)
    assert f'id="filter_judgment-error">{on_logs.group(1)}</span>' in refused.text
    unknown_prompt = browser.post(
        f"{UI}/-/new",
        data={
            "mode": "logs",
            "name": "ui/refused",
            "prompt": "no/such",
            "csrf_token": csrf(browser),
        },
    )
    assert unknown_prompt.status_code == 400
    assert 'id="filter_prompt-error">No prompt at &#39;no/such&#39;' in unknown_prompt.text
    assert client.get(f"{DATASETS}/ui/refused").status_code == 404


def test_editing_a_datapoint_saves_a_new_version_and_leaves_the_old_one(
    client: TestClient, server: Server
) -> None:
    created = client.post(
        f"{DATASETS}/ui/edited/-/versions",
        json={
            "datapoints": [
                {"inputs": {"q": "a"}, "target": "A"},
                {"inputs": {"q": "b"}, "target": "B"},
            ]
        },
    )
    assert created.status_code == 201, created.text
    old = created.json()["id"]
    before = datapoints(client, "ui/edited", old)
    browser = server.browser()
    edit_url = f"{UI}/ui/edited/-/edit"

    form = browser.get(f"{UI}/ui/edited/-/datapoint?version={old}&key={before[0]['key']}")
    assert form.status_code == 200 and "Save as a new version" in form.text
    no_js_form = browser.get(f"{UI}/ui/edited?version={old}&edit={before[0]['key']}")
    assert "Save as a new version" in no_js_form.text

    bad = {"base": old, "key": before[0]["key"], "inputs": "[1]", "target": "A2"}
    refused = browser.post(edit_url, data={**bad, "csrf_token": csrf(browser)})
    assert refused.status_code == 400 and "must be a JSON object" in refused.text
    assert 'aria-invalid="true"' in refused.text and "A2" in refused.text
    refused_htmx = browser.post(edit_url, data=bad, headers={"HX-Request": "true"})
    assert refused_htmx.status_code == 400 and refused_htmx.text.lstrip().startswith("<tr")
    assert len(versions(client, "ui/edited")) == 1

    changed = browser.post(
        edit_url,
        data={**bad, "inputs": '{"q": "a"}', "target": "A, edited", "csrf_token": csrf(browser)},
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    newest = versions(client, "ui/edited")
    assert len(newest) == 2 and newest[0]["id"] != old and newest[0]["source"] == "edit"
    assert [p["target"] for p in datapoints(client, "ui/edited")] == ["A, edited", "B"]
    assert datapoints(client, "ui/edited", old) == before  # the old version is unchanged

    added = browser.post(
        edit_url,
        data={"base": "latest", "inputs": '{"q": "c"}', "target": '{"n": 3}', "target_json": "on"},
        headers={"HX-Request": "true"},
    )
    assert added.status_code == 204 and added.headers["HX-Location"].startswith(f"{UI}/ui/edited")
    assert datapoints(client, "ui/edited")[-1]["target"] == {"n": 3}

    deleted = browser.post(
        edit_url, data={"base": "latest", "key": before[1]["key"], "action": "delete"}
    )
    assert deleted.status_code == 200  # followed the redirect to the new version
    assert [p["inputs"]["q"] for p in datapoints(client, "ui/edited")] == ["a", "c"]
    assert len(versions(client, "ui/edited")) == 4
    assert datapoints(client, "ui/edited", old) == before


def test_unknown_dataset_is_a_404_page(server: Server) -> None:
    page = server.browser().get(f"{UI}/ui/missing")
    assert page.status_code == 404 and "No dataset" in page.text
