// Browser test of the page of `hemoscan serve` (ctest: serve_browser). Starts the built binary on a
// free loopback port, opens the page in Debian's headless Chromium through playwright-core (from
// web/node_modules), uploads an image, waits for the probability and the heatmap, then a DICOM
// series (window presets, slice scrolling), and saves a screenshot. Every request the page makes
// must go to the server itself (the page works offline).
//
//   node page.test.mjs --hemoscan BIN --screenshot OUT.png
//        [--model RUN/model.pt] [--upload FILE...] [--chromium PATH] [--width 1360 --height 900]
// Without --model it makes a tiny model (hemoscan synth + train) in a temporary folder. With
// --upload, those files are uploaded for the screenshot instead (README picture).
// Exit codes: 0 passed, 1 failed, 77 skipped (Chromium or web/node_modules missing).
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const SKIP = 77;
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");

function parseArgs(argv) {
  const out = { upload: [], width: 1360, height: 900 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${key} needs a value`);
      return argv[++i];
    };
    if (key === "--hemoscan") out.hemoscan = value();
    else if (key === "--screenshot") out.screenshot = value();
    else if (key === "--model") out.model = value();
    else if (key === "--chromium") out.chromium = value();
    else if (key === "--width") out.width = Number(value());
    else if (key === "--height") out.height = Number(value());
    else if (key === "--upload") {
      while (i + 1 < argv.length && !argv[i + 1].startsWith("--")) out.upload.push(argv[++i]);
    } else throw new Error(`unknown argument ${key}`);
  }
  if (!out.hemoscan || !out.screenshot) throw new Error("usage: page.test.mjs --hemoscan BIN --screenshot OUT.png");
  return out;
}

function skip(message) {
  console.log(`skipped: ${message}`);
  process.exit(SKIP);
}

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
  console.log(`ok: ${message}`);
}

function run(bin, args) {
  const r = spawnSync(bin, args, { encoding: "utf8" });
  if (r.status !== 0) fail(`${path.basename(bin)} ${args.join(" ")} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function listFiles(dir, pattern) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(p, pattern));
    else if (pattern.test(entry.name)) out.push(p);
  }
  return out.sort();
}

// Starts `hemoscan serve` on a free port; resolves with the base URL once it logs its address.
function startServer(bin, model, dataDir, extra = []) {
  const child = spawn(bin, ["serve", "--model", model, "--data-dir", dataDir, "--port", "0", "--compute-threads", "1",
    ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const onData = (d) => { log += d.toString(); };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hemoscan serve did not start:\n${log}`)), 60000);
    const poll = setInterval(() => {
      const m = /http:\/\/127\.0\.0\.1:([0-9]+)\//.exec(log);
      if (m) {
        clearTimeout(timer);
        clearInterval(poll);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    }, 20);
    child.on("exit", (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`hemoscan serve exited (${code}):\n${log}`));
    });
  });
  return { child, ready, log: () => log };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const chromiumPath = args.chromium || process.env.HEMOSCAN_CHROMIUM || "/usr/bin/chromium";
  if (!fs.existsSync(chromiumPath)) skip(`no Chromium at ${chromiumPath} (scripts/setup.sh installs it)`);
  const modules = path.join(root, "web", "node_modules");
  if (!fs.existsSync(path.join(modules, "playwright-core"))) {
    skip("web/node_modules/playwright-core is missing (run `npm ci` in web/, or scripts/setup.sh)");
  }
  const { chromium } = createRequire(path.join(root, "web", "package.json"))("playwright-core");
  const bin = path.resolve(args.hemoscan);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hemoscan-browser-"));
  let server = null;
  let browser = null;
  try {
    // A tiny model and inputs made here, unless given.
    let model = args.model;
    let image = null;
    let series = [];
    if (!model || args.upload.length === 0) {
      run(bin, ["synth", "--out", path.join(tmp, "synth"), "--studies", "6", "--seed", "3", "--size", "64",
        "--slices", "4", "--format", "png,dicom"]);
      const pngs = listFiles(path.join(tmp, "synth"), /^slice.*\.png$/);
      check(pngs.length > 0, `synth wrote ${pngs.length} PNG slices`);
      image = pngs[Math.floor(pngs.length / 2)];
      const dicoms = listFiles(path.join(tmp, "synth"), /\.dcm$/);
      const firstSeries = dicoms.length ? path.dirname(dicoms[0]) : "";
      series = dicoms.filter((d) => path.dirname(d) === firstSeries);
      if (!model) {
        run(bin, ["train", "--data", path.join(tmp, "synth"), "--model", "cnn-simple", "--out",
          path.join(tmp, "run"), "--size", "48", "--epochs", "1", "--batch", "8", "--threads", "1", "--workers", "1",
          "--augment", "off"]);
        model = path.join(tmp, "run", "model.pt");
      }
    }

    // With an access token, as a server on a network runs: the page asks for it once.
    const token = "hemoscan-browser-test-" + "0123456789abcdef";
    fs.writeFileSync(path.join(tmp, "token"), token + "\n", { mode: 0o600 });
    server = startServer(bin, model, path.join(tmp, "data"), ["--token-file", path.join(tmp, "token")]);
    const base = await server.ready;
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox"] });
    const page = await browser.newPage({ viewport: { width: args.width, height: args.height } });
    const foreign = [];
    page.on("request", (req) => {
      const url = req.url();
      if (!url.startsWith(base) && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
    });
    const consoleErrors = [];
    page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
    page.on("pageerror", (err) => consoleErrors.push(String(err)));

    await page.goto(base + "/");
    await page.locator("#health.ok").waitFor({ timeout: 15000 });
    await page.locator("#token-form:not([hidden])").waitFor({ timeout: 15000 });
    check(true, "the page asks for the access token");
    await page.locator("#token-input").fill("not-the-token-at-all");
    await page.locator("#token-submit").click();
    await page.waitForFunction(() => document.getElementById("token-error").textContent.length > 0);
    check(await page.locator("#token-form:not([hidden])").count() === 1, "a wrong token is refused");
    await page.locator("#token-input").fill(token);
    await page.locator("#token-submit").click();
    await page.locator("#token-form[hidden]").waitFor({ state: "attached", timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("model-info").innerText.includes("Labels"));
    check(true, "signed in: the model's labels are shown");
    const stored = await page.evaluate(() => JSON.stringify(sessionStorage) + JSON.stringify(localStorage) +
      document.cookie);
    check(!stored.includes(token), "the page's scripts cannot read the token back (HttpOnly cookie)");

    const upload = async (files) => {
      await page.locator("#file-input").setInputFiles(files);
      await page.locator("[data-testid=probability]").first().waitFor({ timeout: 120000 });
    };
    const heatmapLoaded = () => page.locator("#heatmap-img").evaluate((img) => img.complete && img.naturalWidth > 0);
    const sliceLoaded = () => page.locator("#slice-img").evaluate((img) => img.complete && img.naturalWidth > 0);

    if (args.upload.length === 0) {
      await upload([image]);
      const text = await page.locator("[data-testid=probability]").first().innerText();
      check(/^\d+(\.\d)?%$/.test(text), `the probability is shown (${text})`);
      const verdict = await page.locator("[data-testid=verdict]").innerText();
      check(verdict.length > 0, `the verdict is shown (${verdict})`);
      await page.waitForFunction(() => {
        const img = document.getElementById("heatmap-img");
        return img.complete && img.naturalWidth > 0;
      }, null, { timeout: 15000 });
      check(await heatmapLoaded() && await sliceLoaded(), "the slice and its heatmap are shown");
      const id = new URL(page.url()).searchParams.get("id");
      check(/^[0-9a-f]{16}$/.test(id || ""), `the URL names the result (${id})`);
      await page.locator(`#history li[data-id="${id}"]`).waitFor({ timeout: 10000 });
      check(true, "the result is in the history");
      // The API agrees with what the page shows.
      const api = await (await fetch(`${base}/api/results/${id}`, { headers: { Authorization: `Bearer ${token}` } }))
        .json();
      const label = api.labels[0];
      const p = api.result[label].probability;
      check(text === (100 * p).toFixed(p >= 0.9995 || p < 0.0005 ? 0 : 1) + "%", `page and API agree (${p})`);
      fs.mkdirSync(path.dirname(path.resolve(args.screenshot)), { recursive: true });
      await page.screenshot({ path: args.screenshot, fullPage: true });
      check(fs.statSync(args.screenshot).size > 10000, `screenshot saved to ${args.screenshot}`);

      // A DICOM series: window presets and the slice scroller.
      if (series.length > 1) {
        await page.locator("#file-input").setInputFiles(series);
        await page.locator("#slice-nav:not([hidden])").waitFor({ timeout: 120000 });
        check(await page.locator("#strip .bar").count() === series.length, `${series.length} slices in the strip`);
        await page.locator('#windows button[data-window="bone"]').click();
        await page.waitForFunction(() => document.getElementById("slice-img").src.includes("window=bone"));
        check(await page.locator('#windows button[data-window="bone"].active').count() === 1, "bone window chosen");
        const before = await page.locator("#slice").inputValue();
        await page.locator(before === "0" ? "#next" : "#prev").click();
        check(await page.locator("#slice").inputValue() !== before, "the slice changes");
        await page.waitForFunction(() => {
          const img = document.getElementById("slice-img");
          return img.complete && img.naturalWidth > 0;
        }, null, { timeout: 15000 });
        check(await page.locator("#history li").count() === 2, "both results are on the worklist");
        // The series' result as DICOM objects: the SR (and key images) offered for download.
        const sr = page.locator('#dicom-links a[data-kind="SR"]');
        await sr.waitFor({ timeout: 15000 });
        const href = await sr.getAttribute("href");
        const dcm = await fetch(base + href, { headers: { Authorization: `Bearer ${token}` } });
        const bytes = Buffer.from(await dcm.arrayBuffer());
        check(dcm.status === 200 && bytes.subarray(128, 132).toString() === "DICM", `the SR downloads (${href})`);
      }
      // Delete the shown result (after confirming): gone from the history and the server.
      const shown = new URL(page.url()).searchParams.get("id");
      const before = await page.locator("#history li").count();
      page.once("dialog", (dialog) => dialog.accept());
      await page.locator("#delete-result").click();
      await page.waitForFunction((n) => document.querySelectorAll("#history li").length === n - 1, before);
      const gone = await fetch(`${base}/api/results/${shown}`, { headers: { Authorization: `Bearer ${token}` } });
      check(gone.status === 404 && !new URL(page.url()).searchParams.get("id"), "a deleted result is gone");
      // An unsupported file: the error is shown, not a result.
      const junk = path.join(tmp, "notes.txt");
      fs.writeFileSync(junk, "not an image");
      await page.locator("#file-input").setInputFiles([junk]);
      await page.locator("#error:not([hidden])").waitFor({ timeout: 15000 });
      check((await page.locator("#error").innerText()).includes("notes.txt"), "an unsupported file shows its error");
    } else {
      // The README picture: the given files, a window preset, the heatmap.
      await upload(args.upload.map((f) => path.resolve(f)));
      await page.waitForFunction(() => {
        const ok = (id) => {
          const img = document.getElementById(id);
          return img.complete && img.naturalWidth > 0;
        };
        return ok("slice-img") && ok("heatmap-img");
      }, null, { timeout: 30000 });
      await page.waitForTimeout(300);
      fs.mkdirSync(path.dirname(path.resolve(args.screenshot)), { recursive: true });
      await page.screenshot({ path: args.screenshot, fullPage: false });
      console.log(`screenshot saved to ${args.screenshot}`);
    }
    check(foreign.length === 0, `no request left the server${foreign.length ? ": " + foreign.join(", ") : ""}`);
    // The 401s before signing in and the 415 of the unsupported upload are logged by the browser itself;
    // anything else is a fault.
    const errors = consoleErrors.filter((e) => !e.includes("status of 415") && !e.includes("status of 401"));
    check(errors.length === 0, `no script errors${errors.length ? ": " + errors.join("; ") : ""}`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (server) {
      server.child.kill("SIGTERM");
      await new Promise((resolve) => {
        if (server.child.exitCode !== null) resolve();
        else server.child.on("exit", resolve);
      });
      if (process.exitCode) console.error(server.log());
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  if (!process.exitCode) console.error(e.stack || String(e));
  process.exit(1);
});
