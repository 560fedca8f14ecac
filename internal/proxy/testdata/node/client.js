// node-postgres (npm pg, pinned in package.json) through switchyard proxy.
//
// Run by internal/proxy/clients_test.go as `node client.js CASE` with the
// environment PROXY_DSN, TLS_DSN, BAD_DSN, NODE_DSNS and ROUNDS (see
// ../psycopg2_client.py). A case prints one JSON object on its last line
// and exits 0, or prints why it failed and exits 1.
'use strict'

const { Client } = require('pg')

const DSN = process.env.PROXY_DSN
const ROUNDS = parseInt(process.env.ROUNDS || '200', 10)

function fail (msg) {
  console.log('FAIL: ' + msg)
  process.exit(1)
}

async function connect (dsn = DSN, extra = {}) {
  const c = new Client({ connectionString: dsn, ...extra })
  await c.connect()
  return c
}

async function one (c, text, values) {
  const r = await c.query({ text, values })
  return r.rows[0]
}

// staleLoop writes with w and reads with r, counting reads older than the
// write before them.
async function staleLoop (w, r, id) {
  let stale = 0
  let replica = 0
  for (let i = 0; i < ROUNDS; i++) {
    const wrote = (await one(w, 'UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v', [id])).v
    const got = await one(r, 'SELECT v, pg_is_in_recovery() AS rec FROM counters WHERE id = $1', [id])
    if (Number(got.v) < Number(wrote)) stale++
    if (got.rec) replica++
  }
  return { rounds: ROUNDS, stale, replica }
}

const cases = {
  async stale_one () {
    const c = await connect()
    const res = await staleLoop(c, c, 0)
    await c.end()
    return res
  },

  async stale_two () {
    const w = await connect()
    const r = await connect()
    const res = await staleLoop(w, r, 1)
    await w.end()
    await r.end()
    return res
  },

  // Named prepared statements (prepared once per client connection, then
  // only bound and executed) from many clients over a few server
  // connections.
  async prepared () {
    const clients = await Promise.all(Array.from({ length: 16 }, () => connect()))
    let runs = 0
    await Promise.all(clients.map(async (c, g) => {
      for (let i = 0; i < 50; i++) {
        await c.query({ name: 'get', text: 'SELECT v FROM counters WHERE id = $1', values: [i % 16] })
        await c.query({ name: 'bump', text: 'UPDATE counters SET v = v + 1 WHERE id = $1', values: [8 + g % 8] })
        runs += 2
      }
    }))
    await Promise.all(clients.map(c => c.end()))
    return { runs }
  },

  async transaction () {
    const c = await connect()
    await c.query('BEGIN')
    const first = await one(c, 'SELECT pg_backend_pid() AS pid, pg_is_in_recovery() AS rec')
    if (first.rec) fail('a read-write transaction began on a replica')
    for (let i = 0; i < 5; i++) {
      const r = await one(c, 'UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING pg_backend_pid() AS pid', [4])
      if (r.pid !== first.pid) fail(`statement ${i} ran on backend ${r.pid}, the first on ${first.pid}`)
    }
    await c.query('COMMIT')
    await c.end()
    return { backend: first.pid }
  },

  // A query read a page of rows at a time: Execute with a row limit and
  // Flush, PortalSuspended, Execute again, then Sync.
  async rows () {
    const c = await connect()
    const r = await c.query({ text: 'SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 10) g', rows: 3 })
    if (r.rows.length !== 10) fail(`${r.rows.length} rows, want 10`)
    const pids = new Set(r.rows.map(x => x.pid))
    if (pids.size !== 1) fail(`the rows came from backends ${[...pids]}`)
    await one(c, 'SELECT 1 AS one')
    await c.end()
    return { rows: r.rows.length }
  },

  async listen () {
    const l = await connect()
    const n = await connect()
    await l.query('LISTEN node_news')
    const got = []
    for (const payload of ['hello', 'later']) {
      const arrived = new Promise((resolve) => l.once('notification', resolve))
      await n.query(`NOTIFY node_news, '${payload}'`)
      let timer
      const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), 20000) })
      const msg = await Promise.race([arrived, timeout])
      clearTimeout(timer)
      if (!msg || msg.channel !== 'node_news' || msg.payload !== payload) fail(`notification ${JSON.stringify(msg)}`)
      got.push(msg.payload)
    }
    await one(l, 'SELECT 1 AS one')
    await l.end()
    await n.end()
    return { notifications: got }
  },

  async cancel () {
    const c = await connect()
    const sql = 'SELECT pg_sleep(30) /* node */'
    const start = Date.now()
    const q = c.query(sql)
    const running = async () => {
      for (const dsn of process.env.NODE_DSNS.split(' ')) {
        const d = await connect(dsn)
        const r = await one(d, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active'", [sql])
        await d.end()
        if (r.n > 0) return true
      }
      return false
    }
    while (!(await running())) {
      if (Date.now() - start > 20000) fail('the query never started')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    // pg's own cancel: a new connection carrying the key the proxy gave.
    const active = c.activeQuery
    new Client({ connectionString: DSN }).cancel(c, active)
    let code = null
    try {
      await q
      fail('the query was not canceled')
    } catch (e) {
      code = e.code
    }
    await one(c, 'SELECT 1 AS one')
    await c.end()
    return { code, seconds: (Date.now() - start) / 1000 }
  },

  async errors () {
    const c = await connect()
    try {
      await c.query('INSERT INTO counters VALUES ($1, 0)', [0])
      fail('a duplicate key was accepted')
    } catch (e) {
      if (e.code !== '23505' || e.constraint !== 'counters_pkey' || e.table !== 'counters') {
        fail(`fields lost: ${e.code} ${e.constraint} ${e.table}`)
      }
    }
    await c.end()
    return { code: '23505' }
  },

  async tls () {
    const ssl = { rejectUnauthorized: false }
    const strip = (dsn) => dsn.replace(/[?&]sslmode=[a-z-]+/, '')
    const c = await connect(strip(process.env.TLS_DSN), { ssl })
    const user = (await one(c, 'SELECT current_user AS u')).u
    await c.query('UPDATE counters SET v = v + 1 WHERE id = 6')
    await c.end()
    let bad = null
    try {
      await connect(strip(process.env.BAD_DSN), { ssl })
      fail('a wrong password was accepted')
    } catch (e) {
      bad = e.code
    }
    return { user, bad }
  },

  async disconnect () {
    const c = await connect()
    await c.query('BEGIN')
    await c.query('UPDATE counters SET v = 999 WHERE id = 3')
    console.log(JSON.stringify({ updated: true }))
    c.connection.stream.destroy() // gone, without a word
    process.exit(0)
  }
}

async function main () {
  const name = process.argv[2]
  if (!cases[name]) fail(`usage: node client.js CASE (one of ${Object.keys(cases).join(', ')})`)
  const res = await cases[name]()
  console.log(JSON.stringify(res))
}

main().catch((e) => fail(`${e.code || ''} ${e.stack || e}`))
