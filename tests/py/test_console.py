"""The web console (#19), as far as it is built: sign-in with an access key, server-side
sessions (cookie flags, sign-out, expiry, the key's deactivation ends them), CSRF on every
form, throttled failed sign-ins; the repositories page (usage, search, sort; create validated as
CreateRepository; delete with confirmation), a repository's images (scan badges, referrers,
delete / archive / restore), an image (manifest, config, findings filtered and sorted, rescan),
the lifecycle editor with its preview, the repository policy editor, pull-through cache rules
and users' access keys — each authorized as the signed-in principal, over HTTP and in headless
Chromium, where axe-core checks every page visited."""
import json
import os
import re
import sqlite3

import requests
from conftest import KEY_ID, SECRET, axe_check, chromium, push_image, rootfs_tar
from test_pull_through import upstream  # noqa: F401 (a fixture)


def sign_in(berth, key=KEY_ID, secret=SECRET):
    """A session signed in through the form; returns (session, the sign-in response)."""
    s = requests.Session()
    r = s.post(f"{berth.endpoint}/console/sign-in", data={"access_key_id": key, "secret_access_key": secret},
               allow_redirects=False)
    return s, r


def csrf_of(html):
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the page carries no CSRF field"
    return m.group(1)


def repositories_page(berth, s, query=""):
    r = s.get(f"{berth.endpoint}/console/repositories{query}", allow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    return r.text


def test_sign_in_cookie_flags_and_sign_out(berth):
    r = requests.get(f"{berth.endpoint}/console/repositories", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/console/sign-in"
    assert requests.get(f"{berth.endpoint}/console/sign-in").status_code == 200

    s, r = sign_in(berth)
    assert r.status_code == 303, r.text
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("berth_console=")
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"]:
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # plain http here; under TLS it is set
    r = s.get(f"{berth.endpoint}/console/repositories")
    page = r.text
    assert "arn:aws:iam::" in page and "Sign out" in page
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
    # Sign-out needs the form's token.
    assert s.post(f"{berth.endpoint}/console/sign-out", allow_redirects=False).status_code == 403
    r = s.post(f"{berth.endpoint}/console/sign-out", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["Set-Cookie"]
    # The session is gone for the server, whatever the browser keeps.
    stale = requests.Session()
    stale.cookies.set("berth_console", cookie.split(";")[0].split("=", 1)[1], path="/console")
    assert stale.get(f"{berth.endpoint}/console/repositories", allow_redirects=False).status_code == 303


def test_wrong_secrets_are_refused_then_throttled(berth):
    for _ in range(5):
        _, r = sign_in(berth, secret="wrong-secret")
        assert r.status_code == 401 and "not valid" in r.text
    _, r = sign_in(berth, secret="wrong-secret")
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 900, r.text
    # Throttled per key (and per address): the right secret waits too.
    _, r = sign_in(berth)
    assert r.status_code == 429
    # An unknown key counts as a failure as well, with the same answer as a wrong secret.
    _, r = sign_in(berth, key="AKIAUNKNOWNKEY000000")
    assert r.status_code == 429


def test_csrf_expiry_and_deactivated_keys_end_sessions(berth):
    key, secret = berth.create_user("alice", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess")
    first, r = sign_in(berth, key, secret)
    assert r.status_code == 303
    second, _ = sign_in(berth, key, secret)
    page = repositories_page(berth, first)
    # A form posted without its token (or with another session's) is refused, and nothing is done.
    r = first.post(f"{berth.endpoint}/console/repositories", data={"name": "csrf-test"}, allow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    other_token = csrf_of(repositories_page(berth, second))
    r = first.post(f"{berth.endpoint}/console/repositories", data={"name": "csrf-test", "csrf": other_token})
    assert r.status_code == 403
    assert "csrf-test" not in repositories_page(berth, first)
    # A created repository shows in the list with its settings.
    r = first.post(f"{berth.endpoint}/console/repositories", allow_redirects=False, data={
        "csrf": csrf_of(page), "name": "team/web", "mutability": "IMMUTABLE", "scan_on_push": "on",
        "encryption": "AES256"})
    assert r.status_code == 303, r.text
    repo = berth.client().describe_repositories(repositoryNames=["team/web"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]

    # Deactivating the key ends every session signed in with it.
    berth.aws("iam", "update-access-key", "--user-name", "alice", "--access-key-id", key, "--status", "Inactive")
    for s in (first, second):
        assert s.get(f"{berth.endpoint}/console/repositories", allow_redirects=False).status_code == 303
    berth.aws("iam", "update-access-key", "--user-name", "alice", "--access-key-id", key, "--status", "Active")
    # They stay ended; a new sign-in works.
    assert first.get(f"{berth.endpoint}/console/repositories", allow_redirects=False).status_code == 303
    third, r = sign_in(berth, key, secret)
    assert r.status_code == 303

    # An expired session is refused (expiry is 12 h: the test moves it into the past).
    if berth.cluster is None:
        db = sqlite3.connect(os.path.join(berth.data_dir, "data", "meta.db"))
        db.execute("UPDATE console_sessions SET expires_at = 0")
        db.commit()
        db.close()
        assert third.get(f"{berth.endpoint}/console/repositories", allow_redirects=False).status_code == 303


def test_the_repositories_page_as_each_principal_may(berth):
    for i in range(3):
        berth.aws("ecr", "create-repository", "--repository-name", f"app/r{i}")
    push_image(berth, "app/r1", "v1", 1)
    push_image(berth, "app/r1", "v2", 2)
    s, _ = sign_in(berth)
    page = repositories_page(berth, s, "?sort=images&order=desc")
    names = re.findall(r"<strong>(app/r\d)</strong>", page)
    assert names[0] == "app/r1", names
    assert "View push commands" in page and "docker login --username AWS --password-stdin" in page
    page = repositories_page(berth, s, "?q=r2")
    assert re.findall(r"<strong>(app/r\d)</strong>", page) == ["app/r2"]
    # The model's validation, next to the field.
    r = s.post(f"{berth.endpoint}/console/repositories", data={"csrf": csrf_of(page), "name": "Bad Name"})
    assert r.status_code == 400 and 'id="name-error"' in r.text and "repositoryName" in r.text, r.text
    # Delete needs the typed confirmation, then force for a repository with images.
    token = csrf_of(page)
    r = s.post(f"{berth.endpoint}/console/repositories/delete", data={"csrf": token, "name": "app/r1", "confirm": "x"})
    assert r.status_code == 400 and "type its name to confirm" in r.text
    r = s.post(f"{berth.endpoint}/console/repositories/delete", data={"csrf": token, "name": "app/r1", "confirm": "app/r1"})
    assert r.status_code == 400 and "RepositoryNotEmptyException" in r.text, r.text
    r = s.post(f"{berth.endpoint}/console/repositories/delete", allow_redirects=False,
               data={"csrf": token, "name": "app/r1", "confirm": "app/r1", "force": "on"})
    assert r.status_code == 303 and "deleted=app%2Fr1" in r.headers["Location"]

    # A read-only user sees the repositories, no way to delete or create; a forged delete is
    # refused in AWS's words.
    key, secret = berth.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    reader, _ = sign_in(berth, key, secret)
    page = repositories_page(berth, reader)
    assert "app/r0" in page and "Delete repository" not in page and "Create a repository" not in page
    r = reader.post(f"{berth.endpoint}/console/repositories/delete",
                    data={"csrf": csrf_of(page), "name": "app/r0", "confirm": "app/r0"})
    assert r.status_code == 400 and "AccessDeniedException" in r.text and "ecr:DeleteRepository" in r.text, r.text
    # A user allowed one repository sees only it.
    key, secret = berth.create_user("narrow", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:DescribeRepositories",
         "Resource": f"arn:aws:ecr:{berth.region}:*:repository/app/r2"}]})
    narrow, _ = sign_in(berth, key, secret)
    assert re.findall(r"<strong>(app/r\d)</strong>", repositories_page(berth, narrow)) == ["app/r2"]


def test_in_a_browser(berth, docker, tmp_path):
    """The console's main path in headless Chromium: sign in, create a repository (IMMUTABLE,
    scan on push), push an image with the Docker engine, see its scan and findings (the OSV
    fixture records), preview a lifecycle rule, meet a policy's validation error, sign out."""
    import io
    import tarfile

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from test_scanning import DEBIAN_LAYERS, import_db, wait_complete

    import_db(berth, tmp_path)
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as t:
        for path, text in DEBIAN_LAYERS[0].items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))

    with chromium("console", berth.cluster) as (browser, shot):
        wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
        browser.get(f"{berth.endpoint}/console/")
        assert browser.current_url.endswith("/console/sign-in")
        browser.find_element(By.ID, "access_key_id").send_keys(KEY_ID)
        browser.find_element(By.ID, "secret_access_key").send_keys(SECRET)
        shot("sign-in")
        axe_check(browser, "sign-in")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(lambda b: b.current_url.endswith("/console/repositories"))
        # Create a repository with IMMUTABLE and scan on push.
        browser.find_element(By.ID, "name").send_keys("browser/app")
        Select(browser.find_element(By.ID, "mutability")).select_by_value("IMMUTABLE")
        browser.find_element(By.ID, "scan_on_push").click()
        browser.find_element(By.XPATH, "//button[text()='Create repository']").click()
        wait.until(lambda b: "q=browser" in b.current_url or "alert" in b.page_source)
        rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == 1 and "browser/app" in rows[0].text and "IMMUTABLE" in rows[0].text, [r.text for r in rows]
        shot("repositories")
        axe_check(browser, "repositories")
        repo = berth.client().describe_repositories(repositoryNames=["browser/app"])["repositories"][0]
        assert repo["imageScanningConfiguration"]["scanOnPush"] is True

        # Push with the Docker engine; the scan runs on push.
        image = f"{berth.host}/browser/app:v1"
        docker.run("import", str(rootfs), image)
        docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token())
        docker.run("push", image)
        wait_complete(berth, "browser/app", "v1")
        # A second, newer image, for the lifecycle preview.
        rootfs_tar(str(tmp_path / "second.tar"), "second image\n")
        docker.run("import", str(tmp_path / "second.tar"), f"{berth.host}/browser/app:v2")
        docker.run("push", f"{berth.host}/browser/app:v2")
        browser.find_element(By.PARTIAL_LINK_TEXT, "browser/app").click()
        wait.until(lambda b: "/console/images" in b.current_url)
        row = browser.find_element(By.XPATH, "//tbody/tr[td[2]/code[text()='v1']]")
        # The scanner's SBOM is a referrer of the image, listed under it.
        assert "vnd.cyclonedx+json" in browser.find_element(By.CSS_SELECTOR, "tr.referrer").text
        # One layer here, so curl's status file is not whited out: openssl's two and curl's.
        assert "v1" in row.text and "COMPLETE" in row.text and "CRITICAL 3" in row.text, row.text
        shot("images")
        axe_check(browser, "images")
        row.find_element(By.CSS_SELECTOR, "td a").click()
        wait.until(lambda b: "/console/image?" in b.current_url)
        findings = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.findings tbody tr")]
        assert len(findings) == 4 and any("CVE-2024-0001" in f and "libssl3" in f for f in findings), findings
        shot("findings")
        axe_check(browser, "findings")

        # The usage review.
        browser.find_element(By.LINK_TEXT, "Usage").click()
        wait.until(lambda b: "/console/usage" in b.current_url)
        assert browser.find_element(By.CSS_SELECTOR, "svg.chart") and "browser/app" in browser.page_source
        shot("usage")
        axe_check(browser, "usage")
        browser.find_element(By.LINK_TEXT, "Registry settings").click()
        wait.until(lambda b: "/console/settings" in b.current_url)
        axe_check(browser, "settings")

        # A lifecycle rule and its preview.
        browser.get(f"{berth.endpoint}/console/lifecycle?repository=browser%2Fapp")
        browser.find_element(By.ID, "priority").send_keys("1")
        Select(browser.find_element(By.ID, "tag_status")).select_by_value("any")
        browser.find_element(By.ID, "count").send_keys("1")
        Select(browser.find_element(By.ID, "count_type")).select_by_value("imageCountMoreThan")
        browser.find_element(By.XPATH, "//button[text()='Add rule to draft']").click()
        wait.until(lambda b: "rulePriority" in b.find_element(By.ID, "policy").get_attribute("value"))
        browser.find_element(By.XPATH, "//button[text()='Preview']").click()
        wait.until(lambda b: b.find_elements(By.ID, "preview-heading") or b.find_elements(By.CSS_SELECTOR, ".alert"))
        assert "1 images would be acted on" in browser.page_source, browser.page_source
        shot("lifecycle-preview")
        axe_check(browser, "lifecycle-preview")

        # An invalid repository policy: the error at the editor.
        browser.get(f"{berth.endpoint}/console/permissions?repository=browser%2Fapp")
        editor = browser.find_element(By.ID, "policy")
        editor.clear()
        editor.send_keys('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}')
        browser.find_element(By.XPATH, "//button[text()='Save policy']").click()
        wait.until(lambda b: b.find_elements(By.ID, "policy-error"))
        assert "InvalidParameterException" in browser.find_element(By.ID, "policy-error").text
        shot("policy-error")
        axe_check(browser, "policy-error")

        # Sign out.
        browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
        wait.until(lambda b: b.current_url.endswith("/console/sign-in"))
        browser.get(f"{berth.endpoint}/console/repositories")
        assert browser.current_url.endswith("/console/sign-in")


def test_images_and_an_images_findings(berth, tmp_path):
    from test_scanning import DEBIAN_LAYERS, Pusher, import_db, wait_complete

    import_db(berth, tmp_path)
    berth.aws("ecr", "create-repository", "--repository-name", "deb", "--image-scanning-configuration", "scanOnPush=true")
    pusher = Pusher(berth)
    digest, layers = pusher.push("deb", "v1", DEBIAN_LAYERS)
    old, _ = pusher.push("deb", "old", [{"srv/old.txt": "old"}])
    wait_complete(berth, "deb", "v1")
    s, _ = sign_in(berth)
    page = repositories_page(berth, s)
    assert 'href="/console/images?repository=deb"' in page

    r = s.get(f"{berth.endpoint}/console/images", params={"repository": "deb"})
    assert r.status_code == 200, r.text
    assert "<code>v1</code>" in r.text and "<code>old</code>" in r.text
    # Scan status with its severity counts as badges.
    assert "COMPLETE" in r.text and "badge sev-critical" in r.text and "CRITICAL 2" in r.text and "MEDIUM 1" in r.text
    assert "Delete selected" in r.text and "Archive selected" in r.text

    # The image: manifest, layers, config, findings sortable and filterable.
    r = s.get(f"{berth.endpoint}/console/image", params={"repository": "deb", "digest": digest})
    assert r.status_code == 200, r.text
    assert "2 layers" in r.text and "linux/amd64" in r.text
    assert r.text.count('<span class="badge sev-critical">') == 2 and "CVE-2024-0005" in r.text
    assert 'href="https://osv.dev/vulnerability/DEBIAN-CVE-2024-0001"' in r.text
    assert "3.0.11-1~deb12u1" in r.text and "Scan again" in r.text
    # The scanner's SBOM, a referrer of the image, downloads.
    sbom_link = re.search(r'href="(/console/image/sbom\?[^"]+)" download', r.text)
    assert sbom_link, "no SBOM download link"
    sbom_url = berth.endpoint + sbom_link.group(1).replace("&amp;", "&")
    r = s.get(sbom_url)
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment;"), r.text[:300]
    assert r.json()["bomFormat"] == "CycloneDX"
    r = s.get(f"{berth.endpoint}/console/image", params={"repository": "deb", "digest": digest})
    r = s.get(f"{berth.endpoint}/console/image", params={"repository": "deb", "digest": digest, "severity": "MEDIUM"})
    assert "CVE-2024-0005" in r.text and "CVE-2024-0001" not in r.text
    r = s.get(f"{berth.endpoint}/console/image", params={"repository": "deb", "digest": digest, "sort": "package"})
    names = re.findall(r"<td>(libssl3|openssl|tar)</td>", r.text)
    assert names == ["libssl3", "openssl", "tar"], names
    # Rescan (CSRF-protected, StartImageScan as the principal).
    token = csrf_of(r.text)
    r = s.post(f"{berth.endpoint}/console/image/scan", data={"csrf": token, "repository": "deb", "digest": digest},
               allow_redirects=False)
    assert r.status_code == 303 and "Scan+started" in r.headers["Location"], r.text

    # Archive, then restore, then delete the old image.
    for action, status in [("archive", "ARCHIVED"), ("restore", "ACTIVE")]:
        r = s.post(f"{berth.endpoint}/console/images/action", allow_redirects=False,
                   data={"csrf": token, "repository": "deb", "action": action, "digest": old})
        assert r.status_code == 303, r.text
        detail = berth.client().describe_images(repositoryName="deb", imageIds=[{"imageDigest": old}],
                                                filter={"imageStatus": "ANY"})["imageDetails"][0]
        assert detail["imageStatus"] in (status, "ACTIVATING"), detail
    r = s.post(f"{berth.endpoint}/console/images/action", allow_redirects=False,
               data={"csrf": token, "repository": "deb", "action": "delete", "digest": old})
    assert r.status_code == 303, r.text
    tagged = berth.client().describe_images(repositoryName="deb", filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert [d["imageTags"] for d in tagged] == [["v1"]]

    # A read-only user sees images and findings, not the actions.
    key, secret = berth.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    reader, _ = sign_in(berth, key, secret)
    r = reader.get(f"{berth.endpoint}/console/images", params={"repository": "deb"})
    assert "<code>v1</code>" in r.text and "Delete selected" not in r.text and "Archive selected" not in r.text
    r = reader.get(f"{berth.endpoint}/console/image", params={"repository": "deb", "digest": digest})
    assert "CVE-2024-0001" in r.text and "Scan again" not in r.text
    assert reader.get(sbom_url).status_code == 200
    # Without the session, the download sends the browser to sign in.
    assert requests.get(sbom_url, allow_redirects=False).status_code == 303
    r = reader.post(f"{berth.endpoint}/console/images/action",
                    data={"csrf": csrf_of(r.text), "repository": "deb", "action": "delete", "digest": digest})
    assert r.status_code == 400 and "AccessDeniedException" in r.text and "ecr:BatchDeleteImage" in r.text


def test_lifecycle_preview_and_the_repository_policy_editor(berth):
    berth.aws("ecr", "create-repository", "--repository-name", "life")
    for i in range(3):
        push_image(berth, "life", f"v{i}", i)
    s, _ = sign_in(berth)
    r = s.get(f"{berth.endpoint}/console/lifecycle", params={"repository": "life"})
    assert r.status_code == 200 and "&quot;rules&quot;: []" in r.text, r.text
    token = csrf_of(r.text)
    url = f"{berth.endpoint}/console/lifecycle"
    # The rule form adds to the draft; nothing is saved.
    r = s.post(url, data={"csrf": token, "repository": "life", "policy": '{"rules": []}', "do": "add-rule",
                          "priority": "1", "description": "keep one", "tag_status": "any",
                          "count_type": "imageCountMoreThan", "count": "1", "rule_action": "expire"})
    assert r.status_code == 200 and "rulePriority" in r.text, r.text
    draft = re.search(r'<textarea id="policy"[^>]*>(.*?)</textarea>', r.text, re.S).group(1)
    draft = draft.replace("&quot;", '"')
    assert json.loads(draft)["rules"][0]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}
    p = berth.aws("ecr", "get-lifecycle-policy", "--repository-name", "life", check=False)
    assert "LifecyclePolicyNotFoundException" in p.stderr
    # Preview before saving: two of the three images would expire.
    r = s.post(url, data={"csrf": token, "repository": "life", "policy": draft, "do": "preview"})
    assert r.status_code == 200 and "2 images would be acted on" in r.text and "expire" in r.text, r.text
    # Saving validates as PutLifecyclePolicy does.
    r = s.post(url, data={"csrf": token, "repository": "life", "policy": '{"rules": [{"rulePriority": 0}]}', "do": "save"})
    assert r.status_code == 400 and "InvalidParameterException" in r.text, r.text
    r = s.post(url, data={"csrf": token, "repository": "life", "policy": draft, "do": "save"}, allow_redirects=False)
    assert r.status_code == 303
    saved = json.loads(berth.client().get_lifecycle_policy(repositoryName="life")["lifecyclePolicyText"])
    assert saved["rules"][0]["rulePriority"] == 1

    # The repository policy: validation errors at the editor, then a valid one saved.
    purl = f"{berth.endpoint}/console/permissions"
    r = s.get(purl, params={"repository": "life"})
    assert r.status_code == 200 and "Save policy" in r.text
    r = s.post(purl, data={"csrf": token, "repository": "life", "do": "save",
                           "policy": '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}'})
    assert r.status_code == 400 and 'id="policy-error"' in r.text and "InvalidParameterException" in r.text, r.text
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow",
              "Principal": {"AWS": f"arn:aws:iam::{berth.client().describe_registry()['registryId']}:root"},
              "Action": ["ecr:BatchGetImage"]}]}
    r = s.post(purl, data={"csrf": token, "repository": "life", "do": "save", "policy": json.dumps(policy)},
               allow_redirects=False)
    assert r.status_code == 303, r.text
    assert json.loads(berth.client().get_repository_policy(repositoryName="life")["policyText"])["Statement"][0]["Sid"] == "pull"
    r = s.post(purl, data={"csrf": token, "repository": "life", "do": "delete", "policy": ""}, allow_redirects=False)
    assert r.status_code == 303


def test_rules_keys_and_refusals_in_a_browser(berth, upstream):
    """In headless Chromium: create a pull-through cache rule and validate it; deactivate a user's
    access key and see that user's other session end; a read-only user finds no way to delete; a
    form posted without its CSRF token is refused; six wrong secrets → 429."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_pull_through import PASSWORD, USER, put_secret

    arn = put_secret(berth, "ecr-pullthroughcache/upstream", {"username": USER, "accessToken": PASSWORD})
    berth.aws("ecr", "create-repository", "--repository-name", "kept/app")
    key, secret = berth.create_user("alice", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    elsewhere, r = sign_in(berth, key, secret)
    assert r.status_code == 303

    with chromium("console-admin", berth.cluster) as (browser, shot):
        wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])

        def form_sign_in(k, s):
            browser.get(f"{berth.endpoint}/console/sign-in")
            browser.find_element(By.ID, "access_key_id").clear()
            browser.find_element(By.ID, "access_key_id").send_keys(k)
            browser.find_element(By.ID, "secret_access_key").send_keys(s)
            browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()

        form_sign_in(KEY_ID, SECRET)
        wait.until(lambda b: b.current_url.endswith("/console/repositories"))

        # A pull-through cache rule, created and validated.
        browser.find_element(By.LINK_TEXT, "Pull-through cache").click()
        wait.until(lambda b: b.current_url.endswith("/console/pull-through"))
        browser.find_element(By.ID, "prefix").send_keys("upstream")
        browser.find_element(By.ID, "upstream_url").send_keys(upstream.url)
        browser.find_element(By.ID, "credential_arn").send_keys(arn)
        browser.find_element(By.XPATH, "//button[text()='Create rule']").click()
        wait.until(lambda b: "was created" in b.page_source or b.find_elements(By.CSS_SELECTOR, ".alert"))
        browser.find_element(By.CSS_SELECTOR, "button[aria-label='Validate upstream']").click()
        wait.until(lambda b: "is valid" in b.page_source or "is not valid" in b.page_source)
        assert "is valid: the upstream answered" in browser.page_source, browser.page_source
        shot("pull-through-validated")
        axe_check(browser, "pull-through-validated")

        # Deactivating alice's key ends her other session.
        browser.find_element(By.LINK_TEXT, "Users").click()
        wait.until(lambda b: b.current_url.endswith("/console/users"))
        browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Deactivate {key} of alice']").click()
        wait.until(lambda b: "was deactivated" in b.page_source)
        shot("key-deactivated")
        axe_check(browser, "key-deactivated")
        assert elsewhere.get(f"{berth.endpoint}/console/repositories", allow_redirects=False).status_code == 303
        browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Activate {key} of alice']").click()
        wait.until(lambda b: "was activated" in b.page_source)

        # A form without its CSRF token is refused.
        browser.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
        browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
        wait.until(lambda b: "security token (CSRF)" in b.page_source)
        shot("csrf-refused")
        axe_check(browser, "csrf-refused")
        browser.get(f"{berth.endpoint}/console/repositories")
        browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
        wait.until(lambda b: b.current_url.endswith("/console/sign-in"))

        # The read-only user finds no way to delete.
        form_sign_in(key, secret)
        wait.until(lambda b: b.current_url.endswith("/console/repositories"))
        assert "kept/app" in browser.page_source
        assert not browser.find_elements(By.XPATH, "//button[contains(., 'Delete')]")
        assert not browser.find_elements(By.ID, "create-heading")
        browser.find_element(By.PARTIAL_LINK_TEXT, "kept/app").click()
        wait.until(lambda b: "/console/images" in b.current_url)
        assert not browser.find_elements(By.XPATH, "//button[contains(., 'Delete')]")
        shot("read-only")
        axe_check(browser, "read-only")
        browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
        wait.until(lambda b: b.current_url.endswith("/console/sign-in"))

        # Six wrong secrets: the sixth is answered 429.
        for _ in range(6):
            form_sign_in(key, "wrong-secret")
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".alert"))
        assert "Too many failed sign-ins" in browser.find_element(By.CSS_SELECTOR, ".alert").text
        shot("throttled")
        axe_check(browser, "throttled")
    r = requests.post(f"{berth.endpoint}/console/sign-in", data={"access_key_id": key, "secret_access_key": secret})
    assert r.status_code == 429


def test_the_users_and_pull_through_pages_over_http(berth, upstream):
    key, secret = berth.create_user("bob", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess")
    root, _ = sign_in(berth)
    page = root.get(f"{berth.endpoint}/console/users").text
    token = csrf_of(page)
    assert "bob" in page and key in page and "Create user" in page
    # A new key's secret is shown once, on the answer to the POST.
    r = root.post(f"{berth.endpoint}/console/users", data={"csrf": token, "do": "create", "user_name": "bob"})
    assert r.status_code == 200 and 'id="new-secret"' in r.text
    new_key = re.search(r"Access key <code>(\w+)</code> was created", r.text).group(1)
    r = root.post(f"{berth.endpoint}/console/users", data={"csrf": token, "do": "create", "user_name": "bob"})
    assert r.status_code == 400 and "LimitExceeded" in r.text
    r = root.post(f"{berth.endpoint}/console/users", allow_redirects=False,
                  data={"csrf": token, "do": "delete", "user_name": "bob", "access_key_id": new_key})
    assert r.status_code == 303
    # Bob may use ECR but not IAM: the page refuses in IAM's words.
    bob, _ = sign_in(berth, key, secret)
    r = bob.get(f"{berth.endpoint}/console/users")
    assert r.status_code == 403 and "AccessDenied" in r.text and "iam:ListUsers" in r.text

    # Pull-through: a rule the model refuses, one created, validated without a credential.
    page = root.get(f"{berth.endpoint}/console/pull-through").text
    r = root.post(f"{berth.endpoint}/console/pull-through",
                  data={"csrf": token, "do": "create", "prefix": "Bad Prefix!", "upstream_url": upstream.url})
    assert r.status_code == 400 and "InvalidParameterException" in r.text, r.text
    assert 'value="Bad Prefix!"' in r.text
    r = root.post(f"{berth.endpoint}/console/pull-through", allow_redirects=False,
                  data={"csrf": token, "do": "create", "prefix": "anon", "upstream_url": upstream.url})
    assert r.status_code == 303, r.text
    r = root.post(f"{berth.endpoint}/console/pull-through", data={"csrf": token, "do": "validate", "prefix": "anon"})
    assert r.status_code == 200 and "is not valid" in r.text
    r = root.post(f"{berth.endpoint}/console/pull-through", allow_redirects=False,
                  data={"csrf": token, "do": "delete", "prefix": "anon"})
    assert r.status_code == 303
    assert berth.client().describe_pull_through_cache_rules()["pullThroughCacheRules"] == []


def test_the_usage_page(berth):
    import time

    berth.aws("ecr", "create-repository", "--repository-name", "use/big")
    berth.aws("ecr", "create-repository", "--repository-name", "use/small")
    digest, _, _ = push_image(berth, "use/big", "v1", 1)
    push_image(berth, "use/big", "v2", 2)
    push_image(berth, "use/small", "v1", 3)
    s, _ = sign_in(berth)
    r = s.get(f"{berth.endpoint}/console/usage")
    assert r.status_code == 200, r.text
    totals = re.search(r'<dl>(.*?)</dl>', r.text, re.S).group(1)
    assert "<dt>Repositories</dt><dd>2</dd>" in totals and "<dt>Images</dt><dd>3</dd>" in totals, totals
    assert "<dt>Images never pulled</dt><dd>3</dd>" in totals and "deduplicated" in totals
    assert '<svg class="chart"' in r.text and 'aria-label="Stored bytes per repository; largest: use/big' in r.text
    # Looking at an image in the console is not a pull.
    assert s.get(f"{berth.endpoint}/console/image", params={"repository": "use/big", "digest": digest}).status_code == 200

    time.sleep(0.5)
    assert "<dt>Images never pulled</dt><dd>3</dd>" in s.get(f"{berth.endpoint}/console/usage").text
    # A pull is recorded behind the request; then one image fewer was never pulled.
    pull = requests.get(f"{berth.endpoint}/v2/use/big/manifests/v1", auth=("AWS", berth.token()),
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert pull.status_code == 200
    for _ in range(50):
        r = s.get(f"{berth.endpoint}/console/usage")
        if "<dt>Images never pulled</dt><dd>2</dd>" in r.text:
            break
        time.sleep(0.1)
    assert "<dt>Images never pulled</dt><dd>2</dd>" in r.text
    # A user allowed one repository counts only it.
    key, secret = berth.create_user("small", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:DescribeRepositories", "ecr:DescribeImages"],
         "Resource": f"arn:aws:ecr:{berth.region}:*:repository/use/small"}]})
    small, _ = sign_in(berth, key, secret)
    r = small.get(f"{berth.endpoint}/console/usage")
    assert "<dt>Repositories</dt><dd>1</dd>" in r.text and "use/big" not in r.text and "deduplicated" not in r.text


def test_registry_settings_editors(berth):
    s, _ = sign_in(berth)
    url = f"{berth.endpoint}/console/settings"
    page = s.get(url, params={"doc": "registry-policy"}).text
    token = csrf_of(page)
    assert "&quot;Statement&quot;: []" in page and "Delete" in page
    r = s.post(url, data={"csrf": token, "doc": "registry-policy", "do": "save", "document": "{not json"})
    assert r.status_code == 400 and "not valid JSON" in r.text
    r = s.post(url, data={"csrf": token, "doc": "registry-policy", "do": "save",
                          "document": '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}'})
    assert r.status_code == 400 and "InvalidParameterException" in r.text, r.text
    account = berth.client().describe_registry()["registryId"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "replicate", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"arn:aws:ecr:{berth.region}:{account}:repository/*"}]}
    r = s.post(url, allow_redirects=False,
               data={"csrf": token, "doc": "registry-policy", "do": "save", "document": json.dumps(policy)})
    assert r.status_code == 303, r.text
    assert json.loads(berth.client().get_registry_policy()["policyText"])["Statement"][0]["Sid"] == "replicate"
    r = s.post(url, allow_redirects=False, data={"csrf": token, "doc": "registry-policy", "do": "delete"})
    assert r.status_code == 303
    p = berth.aws("ecr", "get-registry-policy", check=False)
    assert "RegistryPolicyNotFoundException" in p.stderr

    # The scanning configuration, as PutRegistryScanningConfiguration takes it.
    scanning = {"scanType": "ENHANCED", "rules": [{"scanFrequency": "CONTINUOUS_SCAN",
                                                   "repositoryFilters": [{"filter": "prod/*", "filterType": "WILDCARD"}]}]}
    r = s.post(url, allow_redirects=False,
               data={"csrf": token, "doc": "scanning", "do": "save", "document": json.dumps(scanning)})
    assert r.status_code == 303, r.text
    assert berth.client().get_registry_scanning_configuration()["scanningConfiguration"]["scanType"] == "ENHANCED"
    r = s.post(url, data={"csrf": token, "doc": "scanning", "do": "save", "document": '{"scanType": "SOMETIMES"}'})
    assert r.status_code == 400 and "scanType" in r.text
    # Signing: an unknown profile is refused, naming it.
    signing = {"rules": [{"signingProfileArn": f"arn:aws:signer:{berth.region}:{account}:/signing-profiles/nope"}]}
    r = s.post(url, data={"csrf": token, "doc": "signing", "do": "save", "document": json.dumps(signing)})
    assert r.status_code == 400 and "InvalidParameterException" in r.text and "nope" in r.text, r.text
    # Replication: an empty configuration saves.
    r = s.post(url, allow_redirects=False,
               data={"csrf": token, "doc": "replication", "do": "save", "document": '{"rules": []}'})
    assert r.status_code == 303, r.text

    # A read-only user (AWS's ReadOnly policy does not read registry settings) is refused in AWS's
    # words and offered no way to save.
    key, secret = berth.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    reader, _ = sign_in(berth, key, secret)
    r = reader.get(url, params={"doc": "scanning"})
    assert "AccessDeniedException" in r.text and "ecr:GetRegistryScanningConfiguration" in r.text
    assert ">Save<" not in r.text
