// Load every page of the built site in headless Chromium, as a reader would, and fail on what
// a reader would see wrong:
//
//   - any request that fails (script, stylesheet, font, image), or any request to a host
//     other than the loopback server (the site must work offline);
//   - a script error on the page, or MathJax not starting;
//   - raw TeX left in the rendered text (\( \[ $$ $, TeX commands) or a MathJax error, and
//     literal backticks (Markdown that did not render);
//   - an image that did not load, or a wide figure shown too small to read and not linked
//     to its full size;
//   - code blocks, tables, equations or images that reach past the content column, and a
//     page wider than the window;
//   - placeholder phrases in the prose ("to be filled", "not yet recorded", "TODO", ...).
//
// Usage: node scripts/check_site/check_site.mjs [SITE_DIR [PAGE...]]
// SITE_DIR defaults to site; PAGEs (e.g. theory/weightings/) limit the check to those pages.
// The site is served from 127.0.0.1 on a free port. CHROMIUM overrides the browser
// (default /usr/bin/chromium); DOCS_JS_DIR, where `npm ci` put playwright-core
// (default .venv/docs-js); CHECK_SITE_WIDTH, the window's width in px (default 1280). Prints one line per page and exits 1 if any page fails.

import { createReadStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(process.argv[2] ?? "site");
const jsDir = path.resolve(process.env.DOCS_JS_DIR ?? ".venv/docs-js");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const VIEWPORT = { width: Number(process.env.CHECK_SITE_WIDTH ?? 1280), height: 900 }; // a laptop window
// A figure shown at less than this fraction of its pixel width must open at full size.
const MIN_FIGURE_SCALE = 0.6;
const PLACEHOLDERS = [/to be filled/i, /not yet recorded/i, /not yet tested/i, /\bTODO\b/, /\bTBD\b/, /\bFIXME\b/, /lorem ipsum/i];

function fail(message) {
  console.error(`check_site: ${message}`);
  process.exit(2);
}

if (!existsSync(path.join(root, "index.html"))) fail(`no site at ${root}: run \`make docs\` first`);
if (!existsSync(browserPath)) fail(`no browser at ${browserPath}: \`apt-get install -y chromium\` (or set CHROMIUM)`);
let chromium;
try {
  ({ chromium } = createRequire(path.join(jsDir, "package.json"))("playwright-core"));
} catch {
  fail(`playwright-core is not installed in ${jsDir}: run \`make docs\` (npm ci from scripts/check_site/)`);
}

// --- a static server for the site, on the loopback interface ------------------------------

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".css": "text/css", ".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml",
  ".woff": "font/woff", ".woff2": "font/woff2", ".ico": "image/x-icon", ".xml": "application/xml",
  ".txt": "text/plain", ".inv": "application/octet-stream", ".gz": "application/gzip",
};

function serve(dir) {
  const server = createServer((req, res) => {
    let file = path.join(dir, decodeURIComponent(new URL(req.url, "http://x").pathname));
    if (!file.startsWith(dir)) file = path.join(dir, "404.html");
    if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, "index.html");
    if (!existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function pages(dir, prefix = "") {
  const out = [];
  for (const entry of readdirSync(path.join(dir, prefix), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const rel = path.posix.join(prefix, entry.name);
    if (entry.isDirectory()) out.push(...pages(dir, rel));
    else if (entry.name === "index.html") out.push(prefix ? `${prefix}/` : "");
  }
  return out;
}

// --- what is checked inside the page ------------------------------------------------------

function inspectPage({ minScale }) {
  const problems = [];
  const shorten = (s) => s.replace(/\s+/g, " ").trim().slice(0, 90);
  const content = document.querySelector("article.md-content__inner");

  // Visible text outside code: raw TeX, leftover dollars, literal backticks.
  const skip = "pre, code, script, style, mjx-container, mjx-assistive-mml, .md-search, .md-clipboard, textarea";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    texts.push(node.textContent);
  }
  const text = texts.join(" ");
  const tex = /\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:frac|tfrac|dfrac|lambda|sigma|alpha|epsilon|mathcal|mathrm|mathbb|operatorname|int|sum|hat|left|right|text|qquad|le|ge|in|log|ln|exp|sqrt|cdot|begin|end)\b/;
  const rawTex = text.match(new RegExp(`.{0,40}(?:${tex.source}).{0,40}`));
  if (rawTex) problems.push(`raw TeX in the text: "${shorten(rawTex[0])}"`);
  const dollar = text.match(/.{0,40}\$.{0,40}/);
  if (dollar) problems.push(`a "$" left in the text (math that did not render?): "${shorten(dollar[0])}"`);
  const tick = text.match(/.{0,40}`.{0,40}/);
  if (tick) problems.push(`a literal backtick in the text (Markdown that did not render?): "${shorten(tick[0])}"`);
  for (const err of document.querySelectorAll("mjx-merror, .MathJax_Error")) {
    problems.push(`MathJax error: "${shorten(err.getAttribute("data-mjx-error") ?? err.textContent)}"`);
  }
  const math = document.querySelectorAll(".arithmatex").length;
  const typeset = document.querySelectorAll(".arithmatex mjx-container").length;
  if (typeset < math) problems.push(`${math - typeset} of ${math} math spans not typeset`);

  // Placeholders in the prose (code listings may spell the phrases, e.g. in this check's tests).
  for (const source of window.__placeholders) {
    const m = text.match(new RegExp(`.{0,40}(?:${source}).{0,40}`, "i"));
    if (m) problems.push(`placeholder text: "${shorten(m[0])}"`);
  }

  // Images: loaded, and legible (or linked to the full-size file).
  for (const img of content.querySelectorAll("img")) {
    const name = img.getAttribute("src");
    if (!img.complete || img.naturalWidth === 0) {
      problems.push(`image did not load: ${name}`);
      continue;
    }
    const scale = img.getBoundingClientRect().width / img.naturalWidth;
    const linked = img.closest("a")?.getAttribute("href");
    if (scale < minScale && !linked) {
      problems.push(`image ${name} shown at ${(100 * scale).toFixed(0)}% of its ${img.naturalWidth} px width and not linked to its full size`);
    }
  }

  // Nothing reaches past the content column (what a scroll box hides does not count, as
  // long as the box itself can scroll); the page is no wider than the window.
  const column = document.querySelector(".md-content").getBoundingClientRect();
  const clips = (el) => getComputedStyle(el).overflowX !== "visible";
  const wide = content.querySelectorAll("pre, pre > code, table, div.arithmatex, mjx-container[display], img, .admonition, details, p, li");
  for (const el of wide) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    let right = box.right;
    let left = box.left;
    for (let a = el.parentElement; a && a !== content; a = a.parentElement) {
      if (!clips(a)) continue;
      const r = a.getBoundingClientRect();
      right = Math.min(right, r.right);
      left = Math.max(left, r.left);
    }
    if (right > column.right + 1 || left < column.left - 1) {
      problems.push(`<${el.tagName.toLowerCase()}> reaches ${Math.round(Math.max(right - column.right, column.left - left))} px past the content column: "${shorten(el.textContent)}"`);
    }
    const style = getComputedStyle(el);
    if (["hidden", "clip"].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`<${el.tagName.toLowerCase()}> cuts off ${el.scrollWidth - el.clientWidth} px that cannot be scrolled to: "${shorten(el.textContent)}"`);
    }
  }
  const pageWidth = document.scrollingElement.scrollWidth;
  if (pageWidth > window.innerWidth + 1) problems.push(`the page is ${pageWidth} px wide in a ${window.innerWidth} px window`);
  return { problems, math, images: content.querySelectorAll("img").length };
}

// --- main ---------------------------------------------------------------------------------

const started = Date.now();
const server = await serve(root);
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(path.join(tmpdir(), "check-site-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: browserPath,
  headless: true,
  viewport: VIEWPORT,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
await context.addInitScript((sources) => { window.__placeholders = sources; }, PLACEHOLDERS.map((r) => r.source));

let failed = 0;
const only = process.argv.slice(3).map((p) => p.replace(/^\/+/, ""));
const urls = pages(root).filter((rel) => only.length === 0 || only.includes(rel));
if (urls.length === 0) fail(`no pages to check (asked for: ${only.join(" ")})`);
try {
  for (const rel of urls) {
    const t0 = Date.now();
    const page = await context.newPage();
    const problems = [];
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin) || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
      problems.push(`request outside the site: ${url}`);
      return route.abort();
    });
    page.on("requestfailed", (req) => problems.push(`request failed: ${req.url().replace(origin, "")} (${req.failure()?.errorText})`));
    page.on("response", (res) => {
      if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url().replace(origin, "")}`);
    });
    page.on("pageerror", (err) => problems.push(`script error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
    let result = { problems: [], math: 0, images: 0 };
    try {
      await page.goto(`${origin}/${rel}`, { waitUntil: "load" });
      const hasMath = await page.evaluate(() => document.querySelector(".arithmatex") !== null);
      if (hasMath) {
        try {
          await page.waitForFunction(() => window.MathJax?.startup?.promise, null, { timeout: 10000 });
          await page.evaluate(() => window.MathJax.startup.promise);
        } catch {
          problems.push("MathJax did not start within 10 s");
        }
      }
      await page.evaluate(() => document.fonts.ready);
      result = await page.evaluate(inspectPage, { minScale: MIN_FIGURE_SCALE });
    } catch (err) {
      problems.push(`could not check the page: ${err.message.split("\n")[0]}`);
    }
    await page.close();
    problems.push(...result.problems);
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    const label = `/${rel}`;
    if (problems.length) {
      failed += 1;
      console.log(`FAIL ${label} (${seconds} s)`);
      for (const p of [...new Set(problems)]) console.log(`     ${p}`);
    } else {
      console.log(`ok   ${label} (${result.math} math, ${result.images} images, ${seconds} s)`);
    }
  }
} finally {
  await context.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
const total = ((Date.now() - started) / 1000).toFixed(1);
console.log(`site check: ${urls.length} pages in ${total} s, ${failed} with problems`);
process.exit(failed ? 1 : 0);
