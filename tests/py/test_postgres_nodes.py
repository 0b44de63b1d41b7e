"""Berth nodes on one PostgreSQL metadata store (`--meta postgres://…`), the server started by
scripts/test (`BERTH_TEST_POSTGRES`): the refusals at start (no master key, an unreachable
database, a schema newer than the binary), three nodes started at once on an empty database
creating one account, and a key deactivated through one node refused on another within 2 s.
Each node keeps its own data directory (blobs stay per node until the S3 store exists)."""
import base64
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from conftest import REGION, Berth, berth_bin, free_port, single_node

pytestmark = single_node('it starts its own nodes on PostgreSQL')

ROOT_ENV = ("BERTH_ACCOUNT_ID", "BERTH_ROOT_ACCESS_KEY_ID", "BERTH_ROOT_SECRET_ACCESS_KEY")


def server():
    url = os.environ.get("BERTH_TEST_POSTGRES")
    assert url, "BERTH_TEST_POSTGRES must name a PostgreSQL server (scripts/test starts one)"
    return url


def psql(url, sql):
    p = subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture
def database():
    """A fresh, empty database; its URL."""
    admin = server()
    name = "berth_py_" + uuid.uuid4().hex[:12]
    psql(admin, f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def keyring(tmp_path):
    path = tmp_path / "master.key"
    path.write_text("1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    path.chmod(0o600)
    return str(path)


def start_refused(data_dir, env):
    p = subprocess.run([berth_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in dict(os.environ, **env).items() if k not in ROOT_ENV})
    assert p.returncode != 0, "berth started"
    return p.stderr


def test_a_node_on_postgres_refuses_to_start_without_a_master_key_or_a_database(database, keyring, tmp_path):
    err = start_refused(str(tmp_path / "a"), {"BERTH_META": database})
    assert "give the master keyring with --master-key-file" in err, err
    assert psql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0", "nothing written"
    assert not os.path.exists(tmp_path / "a" / "master.key")

    err = start_refused(str(tmp_path / "b"), {"BERTH_META": "postgres://berth:hunter2@127.0.0.1:1/none",
                                              "BERTH_MASTER_KEY_FILE": keyring})
    assert "the metadata database postgres://berth@127.0.0.1:1/none" in err and "cannot connect" in err, err
    assert "refused" in err, err
    assert "hunter2" not in err

    err = start_refused(str(tmp_path / "c"), {"BERTH_META": "mysql://x", "BERTH_MASTER_KEY_FILE": keyring})
    assert "expected a postgres:// URL" in err, err

    # A schema newer than the binary: a migration this berth does not know.
    os.makedirs(tmp_path / "d")
    node = Berth(str(tmp_path / "d"), extra_env={"BERTH_META": database, "BERTH_MASTER_KEY_FILE": keyring})
    node.stop()
    psql(database, "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
                   "VALUES (9999, 'from the future', true, '\\x00', 0)")
    err = start_refused(str(tmp_path / "e"), {"BERTH_META": database, "BERTH_MASTER_KEY_FILE": keyring})
    assert "schema is newer than this berth" in err, err


def test_three_nodes_started_at_once_create_one_account_and_revocation_reaches_every_node(database, keyring):
    env = {"BERTH_META": database, "BERTH_MASTER_KEY_FILE": keyring}
    dirs = [tempfile.mkdtemp(prefix="node") for _ in range(3)]
    nodes = [None] * 3

    def start(i):
        nodes[i] = Berth(dirs[i], extra_env=env, drop_env=ROOT_ENV)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        logs = []
        for n in nodes:
            n.log.flush()
            logs.append(open(os.path.join(n.data_dir, "berth.log")).read())
        creators = [i for i, log in enumerate(logs) if "created the root access key" in log]
        assert len(creators) == 1, logs
        creds = open(os.path.join(dirs[creators[0]], "data", "admin-credentials")).read()
        key = creds.split("aws_access_key_id = ")[1].split()[0]
        secret = creds.split("aws_secret_access_key = ")[1].split()[0]
        accounts = {n.client(key=key, secret=secret).describe_registry()["registryId"] for n in nodes}
        assert len(accounts) == 1, accounts
        assert psql(database, "SELECT count(*) FROM accounts") == "1"

        # A user's key, created through node 0, deactivated through node 0: refused on node 2.
        iam = nodes[0].client("iam", key=key, secret=secret)
        iam.create_user(UserName="ci")
        iam.attach_user_policy(UserName="ci", PolicyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
        ci = iam.create_access_key(UserName="ci")["AccessKey"]
        on_2 = nodes[2].client(key=ci["AccessKeyId"], secret=ci["SecretAccessKey"])
        token = base64.b64decode(on_2.get_authorization_token()["authorizationData"][0]["authorizationToken"])
        token = token.decode().split(":", 1)[1]
        catalog = f"{nodes[2].endpoint}/v2/_catalog"
        assert requests.get(catalog, auth=("AWS", token)).status_code == 200
        iam.update_access_key(UserName="ci", AccessKeyId=ci["AccessKeyId"], Status="Inactive")
        with pytest.raises(on_2.exceptions.ClientError) as e:
            on_2.describe_repositories()
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        started = time.monotonic()
        while requests.get(catalog, auth=("AWS", token)).status_code != 401:
            assert time.monotonic() - started < 2.0, "the token still works on another node after 2 s"
            time.sleep(0.05)
        # The token key is one for all nodes: a token from node 1 works on node 2.
        token_1 = base64.b64decode(nodes[1].client(key=key, secret=secret).get_authorization_token()
                                   ["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)[1]
        assert requests.get(catalog, auth=("AWS", token_1)).status_code == 200
    finally:
        for n in nodes:
            if n is not None:
                n.stop()


def until(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_scheduled_work_runs_on_one_node_and_moves_when_its_node_dies(database, keyring):
    env = {"BERTH_META": database, "BERTH_MASTER_KEY_FILE": keyring, "BERTH_GC_INTERVAL_SECONDS": "1",
           "BERTH_SCHEDULER_LEASE_SECONDS": "3"}
    nodes = [Berth(tempfile.mkdtemp(prefix="node"), extra_env=env) for _ in range(2)]

    def log(n):
        return open(os.path.join(n.data_dir, "berth.log")).read()
    try:
        assert until(lambda: any("runs the scheduled work" in log(n) for n in nodes), 10)
        holder = next(n for n in nodes if "runs the scheduled work" in log(n))
        other = next(n for n in nodes if n is not holder)
        assert until(lambda: "garbage collection run" in log(holder), 5)
        time.sleep(2)
        assert "garbage collection run" not in log(other) and "runs the scheduled work" not in log(other)
        # The holder dies without giving the lease up: the other node takes over once it expires.
        holder.proc.kill()
        holder.proc.wait()
        died = time.monotonic()
        assert until(lambda: "runs the scheduled work" in log(other), 10)
        assert time.monotonic() - died < 3 + 2, "taken over within the lease's lifetime and a renewal"
        assert until(lambda: "garbage collection run" in log(other), 5)
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, since the test restarts it: (URL of a fresh
    database on it, restart(), terminate_connections())."""
    import glob
    import shutil

    pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    d = tempfile.mkdtemp(prefix="berth-own-pg.")
    shutil.chown(d, "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run(as_pg + [f"{pg_bin}/initdb", "-D", d, "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    ctl = as_pg + [f"{pg_bin}/pg_ctl", "-D", d, "-l", f"{d}/log", "-w"]
    opts = ["-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {d}"]
    subprocess.run(ctl + ["start"] + opts, check=True, capture_output=True)
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    psql(url, "CREATE DATABASE berth")
    berth_url = f"postgres://postgres@127.0.0.1:{port}/berth"

    def restart():
        subprocess.run(ctl + ["-m", "fast", "restart"] + opts, check=True, capture_output=True)

    def terminate_connections():
        psql(url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'berth'")

    yield berth_url, restart, terminate_connections
    subprocess.run(ctl + ["-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_nodes_ride_out_a_database_restart_and_lost_connections(own_postgres, keyring, tmp_path):
    """Every connection of the pools cut (pg_terminate_backend), then the server restarted:
    requests meanwhile are answered 200 or, while the database is down, 503 UNAVAILABLE with
    Retry-After (never another error, never a hang; in practice the pools wait for the server
    and every answer is 200); a read whose connection is terminated while it runs is retried
    on a new one and answered 200; afterwards both nodes serve again without a restart of
    their own, and a change on one still reaches the other (the change feed listens again)."""
    url, restart, terminate_connections = own_postgres
    env = {"BERTH_META": url, "BERTH_MASTER_KEY_FILE": keyring}
    for d in ("a", "b"):
        os.makedirs(tmp_path / d)
    a = Berth(str(tmp_path / "a"), extra_env=env)
    b = Berth(str(tmp_path / "b"), extra_env=env)
    try:
        a.client().create_repository(repositoryName="app")
        session = requests.Session()
        session.auth = ("AWS", a.token())
        r = session.get(f"{a.endpoint}/v2/")
        assert r.status_code == 200
        seen, stop = [], threading.Event()

        def pull_loop():
            while not stop.is_set():
                for node in (a, b):
                    try:
                        r = session.get(f"{node.endpoint}/v2/app/tags/list", timeout=30)
                        seen.append((r.status_code, r.headers.get("Retry-After"), r.text[:200]))
                    except requests.RequestException as e:
                        seen.append((None, None, str(e)))
                time.sleep(0.02)

        worker = threading.Thread(target=pull_loop)
        worker.start()
        time.sleep(0.5)
        terminate_connections()
        time.sleep(0.5)
        restart()
        time.sleep(3)
        stop.set()
        worker.join()
        statuses = {s for s, _, _ in seen}
        assert statuses <= {200, 503}, [x for x in seen if x[0] not in (200, 503)][:5]
        for status, retry_after, body in seen:
            if status == 503:
                assert retry_after and "UNAVAILABLE" in body, (retry_after, body)
        assert [s for s, _, _ in seen[-6:]] == [200] * 6, seen[-6:]

        # A query cut off mid-flight: it waits on a lock another session holds, its connection
        # is terminated, and the node runs it again on a new one (a read: safe to retry).
        holder = subprocess.Popen(["psql", "-qtA", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holder.stdin.write("BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        answer = []
        reader = threading.Thread(target=lambda: answer.append(session.get(f"{a.endpoint}/v2/app/tags/list", timeout=60)))
        reader.start()
        waiting = "SELECT pid FROM pg_stat_activity WHERE datname = 'berth' AND wait_event_type = 'Lock'"
        deadline = time.time() + 10
        while not psql(url, waiting):
            assert time.time() < deadline, "the request never reached the locked table"
            time.sleep(0.02)
        assert psql(url, f"SELECT count(pg_terminate_backend(pid)) FROM ({waiting}) w") == "1"
        time.sleep(0.3)
        holder.stdin.write("ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=10)
        reader.join(timeout=60)
        assert answer and answer[0].status_code == 200, answer and answer[0].text

        # Both nodes write and read again, and b hears of a key a deactivates (the change
        # feed listens again).
        iam = a.client("iam")
        iam.create_user(UserName="ci")
        iam.attach_user_policy(UserName="ci", PolicyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
        ci = iam.create_access_key(UserName="ci")["AccessKey"]
        on_b = b.client(key=ci["AccessKeyId"], secret=ci["SecretAccessKey"])
        token = base64.b64decode(on_b.get_authorization_token()["authorizationData"][0]["authorizationToken"])
        token = token.decode().split(":", 1)[1]
        catalog = f"{b.endpoint}/v2/_catalog"
        assert requests.get(catalog, auth=("AWS", token)).status_code == 200
        iam.update_access_key(UserName="ci", AccessKeyId=ci["AccessKeyId"], Status="Inactive")
        started = time.monotonic()
        while requests.get(catalog, auth=("AWS", token)).status_code != 401:
            assert time.monotonic() - started < 2.0, "the token still works on the other node after 2 s"
            time.sleep(0.05)
    finally:
        a.stop()
        b.stop()
