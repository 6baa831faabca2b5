"""The web console (issue 15) in Debian's Chromium, headless, against a real
`podid server`: sign-in, sessions, CSRF, the security headers and escaping.

The module's server has an admin, a reader, a node key and a reader scoped to
one cluster; two clusters are registered and their associations created with
boto3 (the API), so what the console shows is checked against what was made
through another door. Screenshots (1280x800) go to $PODID_SCREENSHOT_DIR, else
the pytest tmp dir; they are not committed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import botocore.exceptions
import pytest
import requests

from console_helpers import (
    HEIGHT,
    SECURITY_HEADERS,
    WIDTH,
    WRONG_LOGIN,
    Browser,
    chromium_tools,
    png_size,
)
from podid_helpers import ROLE_ARN, ROLE_ARN_2, ApiKey, make_keys, unique, write_keys_file

XSS = "<script>alert(1)</script>"
# The console's pages every signed-in key may open.
PAGES = ("/console/associations", "/console/clusters", "/console/audit", "/console/trust-policy")


# --------------------------------------------------------------------------
# the server's keys and contents

BLUE = unique("blue")
GREEN = unique("green")
# Where the browser creates associations (the list tests' clusters stay as made).
CHANGES = unique("changes")


@pytest.fixture(scope="module")
def api_keys():
    """admin / reader / node, and a reader that may see only BLUE."""
    keys = make_keys()
    keys["scoped"] = ApiKey("PODIDSCOPEDREADER", "scoped-" + keys["reader"].secret_access_key, "reader")
    return keys


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory, api_keys):
    path = tmp_path_factory.mktemp("console-keys") / "keys.toml"
    plain = [k for name, k in api_keys.items() if name != "scoped"]
    write_keys_file(path, plain)
    s = api_keys["scoped"]
    with path.open("a") as f:
        f.write(
            f'\n[[key]]\naccess_key_id = "{s.access_key_id}"\n'
            f'secret_access_key = "{s.secret_access_key}"\nrole = "reader"\nclusters = ["{BLUE}"]\n'
        )
    return path


@dataclass
class World:
    """What the module made through the API."""

    clusters: tuple[str, str]
    associations: list[dict] = field(default_factory=list)

    def of(self, cluster: str) -> list[dict]:
        return [a for a in self.associations if a["clusterName"] == cluster]


@pytest.fixture(scope="module")
def world(podid) -> World:
    w = World((BLUE, GREEN))
    for name in w.clusters:
        podid.register_cluster(name)
    w.associations += [
        podid.create_association(BLUE, "payments", "api"),
        podid.create_association(BLUE, "payments", "worker", roleArn="arn:aws:iam::123456789012:role/payments-worker"),
        podid.create_association(BLUE, "web", "frontend", tags={"team": "web", "note": XSS}),
        podid.create_association(GREEN, "payments", "api", targetRoleArn="arn:aws:iam::210987654321:role/target-role"),
        podid.create_association(GREEN, "batch", "nightly"),
    ]
    return w


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    raw = os.environ.get("PODID_SCREENSHOT_DIR")
    if raw:
        return Path(raw)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser(podid, tmp_path, screenshots):
    tools = chromium_tools()
    if tools is None:
        pytest.skip("chromium or chromedriver is missing (scripts/setup.sh installs them as root)")
    b = Browser(podid.endpoint, tools, tmp_path / "chromium-profile", screenshots)
    yield b
    b.quit()


def sign_in(browser: Browser, key: ApiKey) -> None:
    browser.login(key.access_key_id, key.secret_access_key)
    browser.wait_path("/console/associations")


# --------------------------------------------------------------------------
# sign-in, sessions


def test_a_page_without_session_goes_to_the_login(browser, world):
    browser.open("/console/associations")
    browser.wait_path("/console/login")
    form = browser.el("form#login")
    assert form.find_element("name", "access_key_id")
    assert form.find_element("name", "secret_access_key").get_attribute("type") == "password"


@pytest.mark.parametrize("role", ["admin", "reader"])
def test_sign_in_shows_the_key_id_and_never_the_secret(browser, api_keys, role):
    key = api_keys[role]
    sign_in(browser, key)
    assert key.access_key_id in browser.text("#session-key")
    assert key.secret_access_key not in browser.driver.page_source
    cookie = browser.session_cookie()
    assert cookie is not None, "no podid_session cookie after signing in"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    for link in ("a#nav-associations", "a#nav-clusters", "a#nav-audit", "a#nav-trust-policy"):
        assert browser.has(link), f"no {link} in the layout"


def test_a_wrong_password_stays_on_the_login_page(browser, api_keys):
    key = api_keys["admin"]
    browser.login(key.access_key_id, key.secret_access_key + "x")
    assert browser.path == "/console/login"
    assert browser.text("#login-error") == WRONG_LOGIN
    assert browser.session_cookie() is None
    # An unknown key id gets the same words (no hint which half was wrong).
    browser.login("PODIDNOSUCHKEY", key.secret_access_key)
    assert browser.path == "/console/login"
    assert browser.text("#login-error") == WRONG_LOGIN
    browser.open("/console/associations")
    browser.wait_path("/console/login")


def test_a_node_key_cannot_sign_in(browser, api_keys):
    key = api_keys["node"]
    browser.login(key.access_key_id, key.secret_access_key)
    assert browser.path == "/console/login"
    assert browser.session_cookie() is None
    assert "Node keys cannot sign in" in browser.text("#login-error")
    resp = browser.http(
        "POST",
        "/console/login",
        data={"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key},
        cookie=False,
    )
    assert resp.status_code == 403, (resp.status_code, resp.text[:500])
    assert "podid_session" not in resp.cookies


def test_logout_ends_the_session(browser, api_keys):
    sign_in(browser, api_keys["reader"])
    old = browser.session_cookie()
    assert old is not None
    browser.logout()
    browser.wait_path("/console/login")
    browser.open("/console/associations")
    browser.wait_path("/console/login")
    # The old cookie, replayed outside the browser, is no session either.
    resp = requests.get(
        browser.endpoint + "/console/associations",
        cookies={old["name"]: old["value"]},
        allow_redirects=False,
        timeout=15,
    )
    assert resp.status_code in (302, 303), resp.status_code
    assert resp.headers["location"].endswith("/console/login"), resp.headers


# --------------------------------------------------------------------------
# CSRF


def forged_token(real: str) -> str:
    """The real token with its last character changed."""
    return real[:-1] + ("A" if real[-1] != "A" else "B")


@pytest.mark.parametrize("token", ["missing", "empty", "wrong"])
def test_a_post_without_the_right_csrf_token_is_refused(browser, api_keys, token):
    sign_in(browser, api_keys["admin"])
    real = browser.csrf_token()
    assert len(real) >= 16, real
    data = {"missing": {}, "empty": {"csrf_token": ""}, "wrong": {"csrf_token": forged_token(real)}}[token]
    resp = browser.http("POST", "/console/logout", data=data)
    assert resp.status_code == 403, (resp.status_code, resp.text[:500])
    assert "podid_session" not in resp.cookies
    # The refused logout did not end the session.
    assert browser.http("GET", "/console/associations").status_code == 200
    # The same forged form submitted by the browser itself: the session stays.
    browser.driver.execute_script(
        "const f = document.createElement('form'); f.method = 'POST'; f.action = '/console/logout';"
        "if (arguments[0] !== null) { const i = document.createElement('input'); i.type = 'hidden';"
        " i.name = 'csrf_token'; i.value = arguments[0]; f.appendChild(i); }"
        "const b = document.createElement('button'); b.type = 'submit'; b.id = 'forged'; f.appendChild(b);"
        "document.body.appendChild(f);",
        data.get("csrf_token"),
    )
    browser.submit(browser.el("button#forged"))
    assert browser.path == "/console/logout"
    assert not browser.has("form#login")
    browser.open("/console/associations")
    browser.wait_path("/console/associations")


# --------------------------------------------------------------------------
# headers, escaping


def assert_security_headers(resp, *, static: bool = False) -> None:
    got = {k.lower(): v for k, v in resp.headers.items()}
    for name, value in SECURITY_HEADERS.items():
        if static and name == "content-security-policy":
            continue
        assert got.get(name) == value, (resp.url, resp.status_code, name, got.get(name))
    if not static:
        assert got.get("cache-control") == "no-store", (resp.url, got.get("cache-control"))


def test_every_console_answer_has_the_security_headers(browser, api_keys):
    anonymous = [browser.http("GET", p, cookie=False) for p in ("/console/login", "/console/associations", "/console/clusters")]
    for resp in anonymous:
        assert_security_headers(resp)
    sign_in(browser, api_keys["reader"])
    for path in PAGES:
        resp = browser.http("GET", path)
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html"), resp.headers
        assert_security_headers(resp)
    forbidden = browser.http("POST", "/console/logout", data={})
    assert forbidden.status_code == 403
    assert_security_headers(forbidden)
    for path in ("/console/static/console.css", "/console/static/console.js"):
        resp = browser.http("GET", path, cookie=False)
        assert resp.status_code == 200, (path, resp.status_code)
        assert_security_headers(resp, static=True)


def test_pages_load_without_csp_violations(browser, api_keys, world):
    browser.open("/console/login")
    sign_in(browser, api_keys["reader"])
    for path in PAGES:
        browser.open(path)
        browser.assert_no_injected_script()
    errors = [e for e in browser.console_errors() if "Content Security Policy" in e or "Refused" in e]
    assert errors == [], errors
    # The stylesheet is applied (served as a file, allowed by style-src 'self').
    sheets = browser.driver.execute_script("return document.styleSheets.length")
    assert sheets >= 1


def test_a_typed_key_id_is_shown_back_as_text(browser):
    browser.login(XSS, "wrong")
    assert browser.path == "/console/login"
    assert browser.text("#login-error") == WRONG_LOGIN
    browser.assert_no_injected_script()
    typed = browser.el("form#login input[name=access_key_id]").get_attribute("value")
    assert typed in ("", XSS), typed


def test_the_clusters_page_lists_both_clusters(browser, api_keys, world):
    sign_in(browser, api_keys["reader"])
    browser.open("/console/clusters")
    body = browser.text("body")
    for name in world.clusters:
        assert name in body, name


def test_a_scoped_key_sees_only_its_clusters(browser, api_keys, world):
    sign_in(browser, api_keys["scoped"])
    browser.open("/console/clusters")
    body = browser.text("body")
    assert BLUE in body and GREEN not in body, body


def test_screenshot_size_is_1280x800(browser, api_keys):
    browser.open("/console/login")
    shot = browser.screenshot("login")
    assert png_size(shot) == (WIDTH, HEIGHT)


# --------------------------------------------------------------------------
# the associations list and detail pages


def ids(rows: list[dict[str, str]]) -> set[str]:
    return {r["association-id"] for r in rows}


def row_of(a: dict) -> dict[str, str]:
    """The list row an association made through the API must have."""
    return {
        "cluster": a["clusterName"],
        "namespace": a["namespace"],
        "service-account": a["serviceAccount"],
        "role-arn": a["roleArn"],
        "association-id": a["associationId"],
    }


def test_a_reader_sees_the_associations_of_both_clusters(browser, api_keys, world):
    sign_in(browser, api_keys["reader"])
    rows = browser.rows()
    for a in world.associations:
        assert row_of(a) in rows, (a["associationId"], rows)
    assert {r["cluster"] for r in rows} >= set(world.clusters)
    browser.screenshot("associations")


def test_the_filters_narrow_the_list(browser, api_keys, world):
    sign_in(browser, api_keys["reader"])
    browser.submit_form("form#filters", {"cluster": BLUE})
    assert f"cluster={BLUE}" in browser.query
    assert ids(browser.rows()) == {a["associationId"] for a in world.of(BLUE)}
    browser.submit_form("form#filters", {"cluster": BLUE, "namespace": "payments"})
    assert ids(browser.rows()) == {a["associationId"] for a in world.of(BLUE) if a["namespace"] == "payments"}
    browser.submit_form("form#filters", {"cluster": "", "namespace": "payments"})
    assert ids(browser.rows()) == {a["associationId"] for a in world.associations if a["namespace"] == "payments"}
    # Substrings, combinable.
    browser.submit_form("form#filters", {"namespace": "", "service_account": "work"})
    assert [r["service-account"] for r in browser.rows()] == ["worker"]
    browser.submit_form("form#filters", {"service_account": "", "role": "payments-worker"})
    assert [r["role-arn"] for r in browser.rows()] == ["arn:aws:iam::123456789012:role/payments-worker"]
    browser.submit_form("form#filters", {"cluster": GREEN, "role": "payments-worker"})
    assert browser.rows() == [{}], "a filter matching nothing still shows one row saying so"
    # The filters are query parameters: a link opens the same view.
    browser.open(f"/console/associations?cluster={GREEN}&namespace=batch")
    assert ids(browser.rows()) == {a["associationId"] for a in world.of(GREEN) if a["namespace"] == "batch"}


def test_a_reader_has_no_create_edit_or_delete_controls(browser, api_keys, world):
    a = world.of(BLUE)[0]
    detail = f"/console/associations/{BLUE}/{a['associationId']}"
    sign_in(browser, api_keys["admin"])
    assert browser.has("a#new-association"), "the admin's list has the create link"
    browser.logout()
    sign_in(browser, api_keys["reader"])
    assert not browser.has("a#new-association")
    browser.open(detail)
    browser.el("#association-detail")
    assert not browser.has("a#edit-association")
    assert not browser.has("form#delete-association")


def test_the_detail_page_shows_every_field_and_the_tags_as_text(browser, api_keys, world, eks):
    a = next(x for x in world.associations if x["tags"])
    described = eks.describe_pod_identity_association(clusterName=a["clusterName"], associationId=a["associationId"])[
        "association"
    ]
    sign_in(browser, api_keys["reader"])
    rows = browser.rows()
    link = next(
        tr for tr in browser.els("table#associations tbody tr .association-id a") if tr.text.strip() == a["associationId"]
    )
    browser.submit(link)
    # (The link may percent-encode what needs no encoding: the same path.)
    assert unquote(browser.path) == f"/console/associations/{a['clusterName']}/{a['associationId']}", rows
    detail = "#association-detail"
    assert browser.text(f"{detail} .association-arn") == described["associationArn"]
    assert browser.text(f"{detail} .cluster") == described["clusterName"]
    assert browser.text(f"{detail} .namespace") == described["namespace"]
    assert browser.text(f"{detail} .service-account") == described["serviceAccount"]
    assert browser.text(f"{detail} .role-arn") == described["roleArn"]
    tags = {
        tr.find_element("css selector", ".tag-key").text: tr.find_element("css selector", ".tag-value").text
        for tr in browser.els("table#tags tbody tr")
    }
    assert tags == described["tags"] == {"team": "web", "note": XSS}
    browser.assert_no_injected_script()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.driver.page_source
    browser.el("table#events")
    browser.screenshot("association-detail")


def test_a_scoped_reader_sees_only_its_clusters_associations(browser, api_keys, world):
    sign_in(browser, api_keys["scoped"])
    rows = browser.rows()
    assert {r["cluster"] for r in rows} == {BLUE}
    assert ids(rows) >= {a["associationId"] for a in world.of(BLUE)}
    green = world.of(GREEN)[0]
    resp = browser.http("GET", f"/console/associations/{GREEN}/{green['associationId']}")
    assert resp.status_code == 404, resp.status_code
    assert green["associationId"] not in resp.text


# --------------------------------------------------------------------------
# the trust policy page


def test_the_trust_policy_page_shows_the_statement_and_copies_it(browser, api_keys, podid_cli):
    principal = "arn:aws:iam::111122223333:role/my-broker"
    cli = podid_cli("trust-policy", "--broker-principal", principal, role=None, endpoint=False)
    assert cli.returncode == 0, cli.stderr
    sign_in(browser, api_keys["reader"])
    browser.submit(browser.el("a#nav-trust-policy"))
    browser.submit_form("form#principal", {"principal": principal})
    shown = browser.text("pre#trust-policy")
    assert json.loads(shown) == json.loads(cli.stdout)
    statement = json.loads(shown)["Statement"]
    assert statement == [
        {
            "Sid": "PodidBroker",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ]
    # console.js (allowed by script-src 'self') shows the copy button and copies.
    browser.driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": browser.endpoint, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    button = browser.el("button#copy-trust-policy")
    browser.wait().until(lambda _: button.is_displayed(), "console.js did not show the copy button")
    button.click()
    browser.wait().until(lambda _: button.text == "Copied", "the copy button never said Copied")
    copied = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done('error: ' + e));"
    )
    assert json.loads(copied) == json.loads(cli.stdout)


# --------------------------------------------------------------------------
# the audit page


def audit_ids(browser: Browser) -> list[str]:
    return [td.text.strip() for td in browser.els("table#audit tbody tr td.association-id")]


def test_the_audit_page_lists_changes_newest_first_and_filters(browser, api_keys, world):
    green = [a["associationId"] for a in world.of(GREEN)]
    sign_in(browser, api_keys["reader"])
    browser.submit(browser.el("a#nav-audit"))
    browser.submit_form("form#audit-filters", {"cluster": GREEN})
    assert {td.text.strip() for td in browser.els("table#audit tbody tr td.cluster")} == {GREEN}
    # Both creations through the API, the later one first.
    assert [i for i in audit_ids(browser) if i] == list(reversed(green))
    # The filter is a query parameter: a link opens the same view.
    assert f"cluster={GREEN}" in browser.query
    browser.open(f"/console/audit?cluster={BLUE}")
    assert {td.text.strip() for td in browser.els("table#audit tbody tr td.cluster")} == {BLUE}


# --------------------------------------------------------------------------
# changes from the browser (admin keys)

FORM = "form#association-form"


@pytest.fixture(scope="module")
def changes_cluster(podid, world) -> str:
    podid.register_cluster(CHANGES)
    return CHANGES


def create_in_browser(browser, namespace, service_account, role_arn=ROLE_ARN, **extra):
    browser.open("/console/associations")
    browser.submit(browser.el("a#new-association"))
    browser.wait_path("/console/associations/new")
    browser.screenshot("association-create")
    values = {"cluster_name": CHANGES, "namespace": namespace, "service_account": service_account, "role_arn": role_arn}
    values.update(extra)
    browser.submit_form(FORM, values)


def test_an_admin_creates_edits_and_deletes_an_association(browser, api_keys, changes_cluster, eks, aws_cli):
    sign_in(browser, api_keys["admin"])
    ns, sa = unique("ns"), unique("sa")
    create_in_browser(browser, ns, sa, tags="team=web")
    browser.el("#association-detail")
    listed = eks.list_pod_identity_associations(clusterName=CHANGES, namespace=ns)["associations"]
    assert [(a["namespace"], a["serviceAccount"]) for a in listed] == [(ns, sa)]
    aid = listed[0]["associationId"]
    rc, out, err = aws_cli("eks", "list-pod-identity-associations", "--cluster-name", CHANGES, "--namespace", ns)
    assert rc == 0, err
    assert [a["associationId"] for a in out["associations"]] == [aid]
    browser.open(f"/console/associations?cluster={CHANGES}&namespace={ns}")
    assert [r["association-id"] for r in browser.rows()] == [aid]
    # Edit its role.
    browser.open(f"/console/associations/{CHANGES}/{aid}")
    browser.submit(browser.el("a#edit-association"))
    browser.submit_form(FORM, {"role_arn": ROLE_ARN_2})
    assert browser.text("#association-detail .role-arn") == ROLE_ARN_2
    got = eks.describe_pod_identity_association(clusterName=CHANGES, associationId=aid)["association"]
    assert got["roleArn"] == ROLE_ARN_2
    # Delete it: the page asks first (form#confirm-delete).
    browser.submit(browser.el("form#delete-association button"))
    browser.submit(browser.el("form#confirm-delete button[type=submit]"))
    browser.wait_path("/console/associations")
    assert eks.list_pod_identity_associations(clusterName=CHANGES, namespace=ns)["associations"] == []


def test_a_validation_error_is_shown_next_to_its_field(browser, api_keys, changes_cluster, eks):
    bad = "arn:aws:iam::123:role/too-short-account"
    with pytest.raises(botocore.exceptions.ClientError) as api:
        eks.create_pod_identity_association(clusterName=CHANGES, namespace="default", serviceAccount="x", roleArn=bad)
    message = api.value.response["Error"]["Message"]
    sign_in(browser, api_keys["admin"])
    create_in_browser(browser, "default", unique("sa"), role_arn=bad)
    assert browser.path == "/console/associations/new"
    assert browser.text('.field-error[data-field="role_arn"]') == message
    assert browser.el("form#association-form input[name=role_arn]").get_attribute("value") == bad


def test_a_tag_value_typed_in_the_form_is_shown_as_text(browser, api_keys, changes_cluster):
    sign_in(browser, api_keys["admin"])
    create_in_browser(browser, unique("ns"), unique("sa"), tags=f"note={XSS}")
    tags = {
        tr.find_element("css selector", ".tag-key").text: tr.find_element("css selector", ".tag-value").text
        for tr in browser.els("table#tags tbody tr")
    }
    assert tags == {"note": XSS}
    browser.assert_no_injected_script()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.driver.page_source


def test_a_create_post_without_the_right_csrf_token_is_refused(browser, api_keys, changes_cluster, eks):
    sign_in(browser, api_keys["admin"])
    real = browser.csrf_token()
    ns = unique("ns")
    form = {"cluster_name": CHANGES, "namespace": ns, "service_account": "x", "role_arn": ROLE_ARN}
    for token in (None, forged_token(real)):
        data = dict(form) if token is None else {**form, "csrf_token": token}
        resp = browser.http("POST", "/console/associations/new", data=data)
        assert resp.status_code == 403, (token, resp.status_code)
    assert eks.list_pod_identity_associations(clusterName=CHANGES, namespace=ns)["associations"] == []


def test_a_readers_changing_post_is_refused(browser, api_keys, world, eks):
    a = world.of(BLUE)[0]
    sign_in(browser, api_keys["admin"])
    browser.open(f"/console/associations/{BLUE}/{a['associationId']}")
    browser.submit(browser.el("form#delete-association button"))
    delete_action = browser.el("form#confirm-delete").get_attribute("action")
    browser.logout()
    sign_in(browser, api_keys["reader"])
    token = browser.csrf_token()
    ns = unique("ns")
    create = browser.http(
        "POST",
        "/console/associations/new",
        data={"csrf_token": token, "cluster_name": BLUE, "namespace": ns, "service_account": "x", "role_arn": ROLE_ARN},
    )
    assert create.status_code == 403, create.status_code
    assert eks.list_pod_identity_associations(clusterName=BLUE, namespace=ns)["associations"] == []
    delete = browser.http("POST", urlsplit(delete_action).path, data={"csrf_token": token})
    assert delete.status_code == 403, delete.status_code
    eks.describe_pod_identity_association(clusterName=BLUE, associationId=a["associationId"])
