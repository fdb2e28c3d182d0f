// Loads the auditors' web view in Debian's Chromium, headless, presenting a
// client certificate, and prints what the page shows as one JSON object
// (tests/audit_web.rs compares it with the log). Saves a screenshot.
//
//   node audit_page.mjs URL CERT KEY SCREENSHOT
// (NODE_EXTRA_CA_CERTS names the service's CA.)
import { chromium } from "playwright-core";

const [url, cert, key, shot] = process.argv.slice(2);
const origin = new URL(url).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({
    clientCertificates: [{ origin, certPath: cert, keyPath: key }],
    viewport: { width: 1400, height: 1000 },
  });
  const page = await context.newPage();
  const requested = [];
  page.on("request", (r) => requested.push(r.url()));
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  const response = await page.goto(url);
  const out = { status: response.status(), requested, errors };
  if (response.status() === 200) {
    await page.waitForSelector("body[data-ready]", { timeout: 30000 });
    out.ready = await page.getAttribute("body", "data-ready");
    out.csp = response.headers()["content-security-policy"] || null;
    out.shown = await page.$$eval("[data-testid]", (els) => Object.fromEntries(
      els.filter((e) => e.tagName !== "TABLE").map((e) => [e.dataset.testid, e.textContent])));
    out.timeline = await page.$$eval("[data-testid=timeline] tbody tr",
      (rows) => rows.map((r) => ({ seq: Number(r.cells[0].textContent), event: r.dataset.event,
        by: r.cells[3].textContent })));
    out.perDay = await page.$$eval("[data-testid=per-day] tbody tr",
      (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    out.usage = await page.$$eval("[data-testid=usage] tbody tr",
      (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    await page.screenshot({ path: shot, fullPage: true });
    await page.selectOption("#filter", "refusals");
    out.refusalRows = await page.$$eval("[data-testid=timeline] tbody tr",
      (rows) => rows.map((r) => r.dataset.event));
  }
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
