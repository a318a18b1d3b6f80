// Headless Chromium on the nvr web page: the page loads, an event is listed, and its H.264
// clip plays in the <video> element (readyState ≥ 2 and currentTime advances).
// usage: NODE_PATH=…/node_modules node browser.cjs http://127.0.0.1:PORT/
// Needs Debian's chromium and playwright-core (npm); prints one JSON line; exit 0 when it plays.
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const url = process.argv[2];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--autoplay-policy=no-user-gesture-required"],
  });
  let result = { ok: false };
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForSelector(".event video", { timeout: 30000 });
    result = await page.evaluate(async () => {
      const v = document.querySelector(".event video");
      v.muted = true;
      // Wait for enough data to play, then play for a moment.
      for (let i = 0; i < 100 && v.readyState < 2; i++) await new Promise((r) => setTimeout(r, 100));
      await v.play().catch(() => {});
      const t0 = v.currentTime;
      await new Promise((r) => setTimeout(r, 2000));
      return {
        events: document.querySelectorAll(".event").length,
        readyState: v.readyState,
        t0,
        t1: v.currentTime,
        error: v.error ? v.error.code : null,
        duration: v.duration,
      };
    });
    result.pageErrors = errors;
    result.ok = result.events >= 1 && result.readyState >= 2 && result.t1 > result.t0 && errors.length === 0;
  } catch (e) {
    result.exception = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
})();
