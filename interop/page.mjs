// The page at `/` in headless Chromium, driven by playwright-core (which
// downloads no browser: it drives Debian's /usr/bin/chromium).
//
//   node interop/page.mjs PATH/TO/presence
//
// One `presence serve` node on loopback serves the page and phoenix.js from
// the npm package. ann's page and bob's page join room lobby; ann's lists
// both; bob's page closes and ann's lists only ann. Without Chromium the
// test says so and exits 0: it is the one check the issue lets skip.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const binary = process.argv[2];
if (!binary) {
  console.error("usage: node page.mjs PATH/TO/presence");
  process.exit(64);
}
if (!existsSync(CHROMIUM)) {
  console.log(`page: SKIPPED: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(0);
}
const { chromium } = await import("playwright-core");
const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "presence-page-"));
let server;
let browser;

async function finish(code, message) {
  if (message) console.error(message);
  if (browser) await browser.close().catch(() => {});
  if (server) server.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
const overall = setTimeout(() => finish(1, "page: FAILED: the run took over 60 s"), 60_000);

async function freePort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function names(page) {
  return page.$$eval("#online li", (items) => items.map((item) => item.dataset.key));
}

async function waitForNames(page, who, expected) {
  try {
    await page.waitForFunction(
      (want) => JSON.stringify([...document.querySelectorAll("#online li")].map((li) => li.dataset.key)) === want,
      JSON.stringify(expected),
      { timeout: 10_000 },
    );
  } catch {
    await finish(1, `page: FAILED: ${who}'s page lists ${JSON.stringify(await names(page))}, not ${JSON.stringify(expected)}`);
  }
}

async function main() {
  const [http, cluster] = [await freePort(), await freePort()];
  const config = join(dir, "page.toml");
  const phoenixJs = join(here, "node_modules/phoenix/priv/static/phoenix.min.js");
  writeFileSync(
    config,
    `node = "page"\n[http]\nlisten = "127.0.0.1:${http}"\nphoenix_js = ${JSON.stringify(phoenixJs)}\n[cluster]\nlisten = "127.0.0.1:${cluster}"\n`,
  );
  server = spawn(binary, ["serve", "--config", config, "--max-runtime-secs", "90"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await new Promise((resolve, reject) => {
    createInterface({ input: server.stdout }).on("line", (line) => {
      if (JSON.parse(line).type === "started") resolve();
    });
    server.on("exit", (code) => reject(new Error(`the server exited with ${code}`)));
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const base = `http://127.0.0.1:${http}/?room=lobby`;
  const ann = await browser.newPage();
  await ann.goto(`${base}&name=ann`);
  await waitForNames(ann, "ann", ["ann"]);
  const bob = await browser.newPage();
  await bob.goto(`${base}&name=bob`);
  await waitForNames(ann, "ann", ["ann", "bob"]);
  await waitForNames(bob, "bob", ["ann", "bob"]);
  console.log("page: ann's and bob's pages list both");
  await bob.close();
  await waitForNames(ann, "ann", ["ann"]);
  const count = await ann.textContent("#count");
  if (count !== "1") await finish(1, `page: FAILED: the count reads ${count}`);
  console.log("page: bob's page closed; ann's lists only ann");
  clearTimeout(overall);
  console.log("page: passed");
  await finish(0);
}

main().catch((error) => finish(1, `page: FAILED: ${error.stack || error}`));
