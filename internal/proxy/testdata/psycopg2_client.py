"""psycopg2 (Debian's python3-psycopg2) through switchyard proxy.

Run by internal/proxy/clients_test.go as
    /usr/bin/python3 psycopg2_client.py CASE
with the environment:
    PROXY_DSN  the proxy, as a role the servers trust
    TLS_DSN    the proxy over TLS, as a role with a password (SCRAM on the servers)
    BAD_DSN    the same with a wrong password
    NODE_DSNS  the servers themselves, space-separated (to see what runs where)
    ROUNDS     rounds of the write-then-read loops
A case prints one JSON object on its last line and exits 0, or prints why
it failed and exits 1.
"""

import io
import json
import os
import select
import sys
import threading
import time

import psycopg2
import psycopg2.errors
import psycopg2.extensions

DSN = os.environ["PROXY_DSN"]
ROUNDS = int(os.environ.get("ROUNDS", "200"))


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def connect(dsn=DSN, autocommit=True):
    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def stale_one():
    """Write then read on one connection."""
    conn = connect()
    stale = replica = 0
    for _ in range(ROUNDS):
        (wrote,) = one(conn, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v")
        got, rec = one(conn, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0")
        stale += got < wrote
        replica += rec
    return {"rounds": ROUNDS, "stale": stale, "replica": replica}


def stale_two():
    """Write on one connection, read on another (global consistency)."""
    writer, reader = connect(), connect()
    stale = replica = 0
    for _ in range(ROUNDS):
        (wrote,) = one(writer, "UPDATE counters SET v = v + 1 WHERE id = 1 RETURNING v")
        got, rec = one(reader, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 1")
        stale += got < wrote
        replica += rec
    return {"rounds": ROUNDS, "stale": stale, "replica": replica}


def stale_per_request():
    """A new connection for every request, as Django opens them by default."""
    stale = replica = 0
    for _ in range(ROUNDS):
        w = connect(autocommit=False)
        (wrote,) = one(w, "UPDATE counters SET v = v + 1 WHERE id = 2 RETURNING v")
        w.commit()
        w.close()
        r = connect(autocommit=False)
        got, rec = one(r, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 2")
        r.rollback()
        r.close()
        stale += got < wrote
        replica += rec
    return {"rounds": ROUNDS, "stale": stale, "replica": replica}


def transaction():
    """psycopg2's implicit transactions: every statement on one backend,
    the primary; read-only ones on the replica once it is fresh."""
    conn = connect(autocommit=False)
    pid0, rec = one(conn, "SELECT pg_backend_pid(), pg_is_in_recovery()")
    if rec:
        fail("a read-write transaction began on a replica")
    for i in range(5):
        (pid,) = one(conn, "UPDATE counters SET v = v + 1 WHERE id = 4 RETURNING pg_backend_pid()")
        if pid != pid0:
            fail("statement %d of a transaction ran on backend %d, the first on %d" % (i, pid, pid0))
    conn.commit()
    (after,) = one(conn, "SELECT v FROM counters WHERE id = 4")
    conn.commit()
    conn.set_session(readonly=True)
    deadline = time.time() + 30
    while True:
        rec, v = one(conn, "SELECT pg_is_in_recovery(), v FROM counters WHERE id = 4")
        conn.rollback()
        if v < after:
            fail("a read-only transaction read %d after the commit of %d" % (v, after))
        if rec:
            break
        if time.time() > deadline:
            fail("no read-only transaction ran on the replica")
    return {"backend": pid0}


def copy():
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS copied_py")
        cur.execute("CREATE TABLE copied_py (id int, name text)")
        data = "".join("%d\tname %d\n" % (i, i) for i in range(1000))
        cur.copy_expert("COPY copied_py FROM STDIN", io.StringIO(data))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id, name FROM copied_py ORDER BY id) TO STDOUT", out)
        if out.getvalue() != data:
            fail("COPY TO gave %d bytes, want %d" % (len(out.getvalue()), len(data)))
        try:
            cur.copy_expert("COPY copied_py FROM STDIN", io.StringIO("not a number\tx\n"))
            fail("bad COPY data was accepted")
        except psycopg2.errors.InvalidTextRepresentation:
            pass
        cur.execute("SELECT count(*) FROM copied_py")
        (n,) = cur.fetchone()
    return {"rows": n}


def listen():
    listener, notifier = connect(), connect()
    with listener.cursor() as cur:
        cur.execute("LISTEN py_news")
    got = []
    for payload in ("hello", "later"):
        with notifier.cursor() as cur:
            cur.execute("NOTIFY py_news, %s", (payload,))
        deadline = time.time() + 20
        while not listener.notifies:
            if time.time() > deadline:
                fail("no notification %r" % payload)
            select.select([listener], [], [], 1)
            listener.poll()
        n = listener.notifies.pop(0)
        if n.channel != "py_news" or n.payload != payload:
            fail("notification %r %r" % (n.channel, n.payload))
        got.append(n.payload)
    one(listener, "SELECT 1")
    return {"notifications": got}


def running_on_a_node(sql):
    """Whether sql runs on one of the servers now (seen in pg_stat_activity)."""
    for dsn in os.environ["NODE_DSNS"].split():
        c = psycopg2.connect(dsn)
        try:
            (n,) = one(c, "SELECT count(*) FROM pg_stat_activity WHERE query = %s AND state = 'active'", (sql,))
        finally:
            c.close()
        if n:
            return True
    return False


def cancel():
    conn = connect()
    sql = "SELECT pg_sleep(30) /* psycopg2 */"
    result = {}

    def run():
        start = time.time()
        try:
            one(conn, sql)
            result["err"] = "the query was not canceled"
        except psycopg2.errors.QueryCanceled as e:
            result["code"] = e.pgcode
        except Exception as e:  # noqa: BLE001
            result["err"] = repr(e)
        result["seconds"] = time.time() - start

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 20
    while not running_on_a_node(sql):
        if time.time() > deadline:
            fail("the query never started")
        time.sleep(0.02)
    conn.cancel()
    t.join(30)
    if "err" in result:
        fail(result["err"])
    one(conn, "SELECT 1")
    return result


def errors():
    conn = connect()
    try:
        one(conn, "INSERT INTO counters VALUES (0, 0) RETURNING id")
        fail("a duplicate key was accepted")
    except psycopg2.errors.UniqueViolation as e:
        if e.diag.constraint_name != "counters_pkey" or e.diag.table_name != "counters":
            fail("fields lost: %r %r" % (e.diag.constraint_name, e.diag.table_name))
        code = e.pgcode
    try:
        one(conn, "SELEC 1")
    except psycopg2.errors.SyntaxError as e:
        if not e.diag.statement_position:
            fail("no position")
    return {"code": code}


def tls():
    conn = connect(os.environ["TLS_DSN"])
    user, = one(conn, "SELECT current_user")
    one(conn, "UPDATE counters SET v = v + 1 WHERE id = 6 RETURNING v")
    try:
        one(conn, "CREATE TABLE nope_py (id int)")
        fail("the role's grants do not hold")
    except psycopg2.errors.InsufficientPrivilege:
        pass
    ssl = conn.info.ssl_in_use
    try:
        psycopg2.connect(os.environ["BAD_DSN"])
        fail("a wrong password was accepted")
    except psycopg2.OperationalError as e:
        if "password authentication failed" not in str(e):
            fail("a wrong password: %s" % e)
        bad = str(e).strip().splitlines()[-1]
    return {"user": user, "ssl": ssl, "bad": bad}


def session_state():
    """SET, a temporary table and SQL-level PREPARE pin the client to one
    backend until DISCARD ALL."""
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SET application_name = 'pinned-py'")
        cur.execute("CREATE TEMP TABLE scratch_py AS SELECT 7 AS v")
        cur.execute("PREPARE get_scratch AS SELECT v, current_setting('application_name') FROM scratch_py")
        for _ in range(10):
            cur.execute("EXECUTE get_scratch")
            if cur.fetchone() != (7, "pinned-py"):
                fail("session state lost")
        cur.execute("DISCARD ALL")
        cur.execute("SELECT current_setting('application_name')")
        (app,) = cur.fetchone()
    if app == "pinned-py":
        fail("DISCARD ALL left the setting")
    return {"ok": True}


def disconnect():
    """Leave in the middle of a transaction, without a word."""
    conn = connect(autocommit=False)
    one(conn, "UPDATE counters SET v = 999 WHERE id = 3 RETURNING v")
    print(json.dumps({"updated": True}), flush=True)
    os._exit(0)


CASES = {f.__name__: f for f in (stale_one, stale_two, stale_per_request, transaction, copy, listen,
                                  cancel, errors, tls, session_state, disconnect)}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        fail("usage: psycopg2_client.py CASE (one of %s)" % ", ".join(CASES))
    print(json.dumps(CASES[sys.argv[1]]()), flush=True)
