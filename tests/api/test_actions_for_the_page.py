"""Routes the status page's buttons use besides alerts and reindex: dead letters (list, replay)
and migration resume; in process, with bearer tokens."""

from __future__ import annotations

import psycopg


def _letter(catalog: psycopg.Connection, payload: bytes, source: str = "s3-sqs") -> int:
    row = catalog.execute(
        "INSERT INTO dead_letters (source, message_id, reason, payload, attributes) "
        "VALUES (%s, 'm-1', 'not JSON', %s, '{}') RETURNING id",
        (source, payload),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_dead_letters_are_listed_with_their_reason(api, catalog, read_auth) -> None:
    letter = _letter(catalog, b"{broken")
    body = api.get("/api/v1/deadletters", headers=read_auth).json()
    assert [(d["id"], d["source"], d["reason"]) for d in body["dead_letters"]] == [(letter, "s3-sqs", "not JSON")]
    assert "payload" not in body["dead_letters"][0]
    assert api.get("/api/v1/deadletters", params={"limit": 0}, headers=read_auth).status_code == 422


def test_replay_needs_a_write_token_and_says_why_a_letter_fails_again(api, catalog, read_auth, write_auth) -> None:
    letter = _letter(catalog, b"{broken")
    assert api.post(f"/api/v1/deadletters/{letter}/replay", headers=read_auth).status_code == 403
    again = api.post(f"/api/v1/deadletters/{letter}/replay", headers=write_auth)
    assert again.status_code == 409 and f"dead letter {letter} failed again" in again.json()["error"]
    assert api.post("/api/v1/deadletters/999999/replay", headers=write_auth).status_code == 404
    assert api.post("/api/v1/deadletters/x/replay", headers=write_auth).status_code == 422


def test_resume_of_an_unknown_job_is_404_and_needs_a_write_token(api, read_auth, write_auth) -> None:
    assert api.post("/api/v1/migrations/nope/resume", headers=read_auth).status_code == 403
    missing = api.post("/api/v1/migrations/nope/resume", headers=write_auth)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_mounts_say_held_deletes_only_where_the_guard_exists(api, catalog, add_mount, read_auth) -> None:
    add_mount("m", "s3://bkt/")
    exists = catalog.execute("SELECT to_regclass('held_deletes') IS NOT NULL").fetchone()[0]
    held = api.get("/api/v1/mounts/m", headers=read_auth).json()["held_deletes"]
    assert held == (0 if exists else None)
