// The stock phoenix.js client (npm package `phoenix`, over the `ws`
// package) against two `presence serve` nodes on loopback.
//
//   node interop/two_nodes.mjs PATH/TO/presence
//
// ann joins on n1 and bob on n2: each sees both through Presence.onSync /
// list. ann updates her meta and bob sees it; ann leaves and bob sees it.
// carol joins on n1, n1 is killed (SIGKILL: no permdown), and carol leaves
// bob's view only after n2's down period. Exits 0 when every step held,
// 1 with the step that did not; the whole run is bounded by a timeout.

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

const binary = process.argv[2];
if (!binary) {
  console.error("usage: node two_nodes.mjs PATH/TO/presence");
  process.exit(64);
}
const DOWN_MS = 2000;
const children = [];
const dir = mkdtempSync(join(tmpdir(), "presence-interop-"));

function fail(message) {
  console.error(`interop: FAILED: ${message}`);
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}
const overall = setTimeout(() => fail("the run took over 60 s"), 60_000);

async function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function configFor(name, http, cluster, peers) {
  const peerList = Object.entries(peers).map(([peer, port]) => `${peer} = "127.0.0.1:${port}"`).join(", ");
  return `node = "${name}"
[http]
listen = "127.0.0.1:${http}"
[cluster]
listen = "127.0.0.1:${cluster}"
secret_file = "${join(dir, "secret")}"
peers = { ${peerList} }
[tracker]
broadcast_period_ms = 100
max_silent_periods = 5
down_period_ms = ${DOWN_MS}
permdown_period_ms = 20000
`;
}

function startNode(name, config) {
  const path = join(dir, `${name}.toml`);
  writeFileSync(path, config);
  const child = spawn(binary, ["serve", "--config", path, "--max-runtime-secs", "90"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  children.push(child);
  child.stderr.on("data", (data) => process.stderr.write(`[${name}] ${data}`));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const event = JSON.parse(line);
      if (event.type === "started") resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`${name} exited with ${code} before it started`)));
  });
}

/** A phoenix.js socket, channel and Presence on one node. */
function client(httpPort, key, meta) {
  const socket = new Socket(`ws://127.0.0.1:${httpPort}/socket`, {
    transport: WebSocket,
    heartbeatIntervalMs: 1000,
    reconnectAfterMs: () => 200,
  });
  socket.connect();
  const channel = socket.channel("room:lobby", { presence: { key, meta } });
  const presence = new Presence(channel);
  const watchers = new Set();
  presence.onSync(() => {
    for (const watcher of [...watchers]) watcher();
  });
  const joined = new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", (reply) => reject(new Error(JSON.stringify(reply))));
  });
  /** Resolves once `test(presence)` holds after a sync, or fails after `ms`. */
  function until(what, test, ms = 10_000) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => fail(`${key} never saw: ${what}; it lists ${JSON.stringify(names())}`), ms);
      const check = () => {
        if (test(presence)) {
          clearTimeout(timer);
          watchers.delete(check);
          resolve();
        }
      };
      watchers.add(check);
      check();
    });
  }
  function names() {
    return presence.list((name) => name).sort();
  }
  return { socket, channel, presence, joined, until, names };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  writeFileSync(join(dir, "secret"), "interop secret, long enough to be accepted");
  const [h1, c1, h2, c2] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const n1 = await startNode("n1", configFor("n1", h1, c1, { n2: c2 }));
  await startNode("n2", configFor("n2", h2, c2, { n1: c1 }));

  const ann = client(h1, "ann", { status: "here" });
  const bob = client(h2, "bob", { status: "here" });
  await Promise.all([ann.joined, bob.joined]);
  await ann.until("ann and bob", () => same(ann.names(), ["ann", "bob"]));
  await bob.until("ann and bob", () => same(bob.names(), ["ann", "bob"]));
  console.log("interop: ann (n1) and bob (n2) see each other through Presence.list");

  await new Promise((resolve, reject) =>
    ann.channel.push("presence:update", { meta: { status: "away" } }).receive("ok", resolve).receive("error", reject),
  );
  await bob.until("ann away", (p) => {
    const entry = p.state["ann"];
    return entry && entry.metas.length === 1 && entry.metas[0].status === "away";
  });
  console.log("interop: bob sees ann's update (one meta, status away)");

  let leftSeen = false;
  bob.presence.onLeave((key) => {
    if (key === "ann") leftSeen = true;
  });
  await new Promise((resolve) => ann.channel.leave().receive("ok", resolve));
  await bob.until("ann gone", () => same(bob.names(), ["bob"]));
  if (!leftSeen) fail("Presence.onLeave was not called for ann");
  console.log("interop: bob sees ann leave (onLeave called)");

  const carol = client(h1, "carol", {});
  await carol.joined;
  await bob.until("carol", () => same(bob.names(), ["bob", "carol"]));
  const killed = Date.now();
  n1.kill("SIGKILL");
  await bob.until("carol gone after n1 died", () => same(bob.names(), ["bob"]), DOWN_MS + 8000);
  const waited = Date.now() - killed;
  if (waited < DOWN_MS - 300) fail(`carol left bob's view ${waited} ms after n1 died, before the down period (${DOWN_MS} ms)`);
  console.log(`interop: n1 killed; carol left bob's view after ${waited} ms (down period ${DOWN_MS} ms)`);

  clearTimeout(overall);
  for (const socket of [ann.socket, bob.socket, carol.socket]) socket.disconnect();
  for (const child of children) child.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
  console.log("interop: passed");
  process.exit(0);
}

main().catch((error) => fail(error.stack || String(error)));
