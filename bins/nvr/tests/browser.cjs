// Headless Chromium on the nvr web page (issue 18's "done when"):
// - the demo camera's live view plays: its currentTime advances and its pixels change, and the
//   page reports its own start latency and how far behind the camera it shows;
// - an event is listed with its snapshot thumbnails, and its H.264 clip plays in the <video>;
// - the timeline shows a recorded span and the event's mark; clicking the span plays the
//   streamed export from there;
// - a screenshot is written to argv[3].
// usage: NODE_PATH=…/node_modules node browser.cjs http://127.0.0.1:PORT/ SCREENSHOT.png
// Needs Debian's chromium and playwright-core (npm); prints one JSON line; exit 0 when all holds.
// The only time limits are hang guards (15 s per wait).
"use strict";
const { chromium } = require("playwright-core");

const GUARD = 15000;

(async () => {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--autoplay-policy=no-user-gesture-required"],
  });
  let result = { ok: false };
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // Plays a <video> muted and waits (hang guard 15 s) until its currentTime advances.
    await page.addInitScript(() => {
      window.nvrPlays = async (v) => {
        v.muted = true;
        for (let i = 0; i < 100 && v.readyState < 2; i++) await new Promise((r) => setTimeout(r, 100));
        await v.play().catch(() => {});
        const t0 = v.currentTime;
        for (let i = 0; i < 50 && v.currentTime <= t0; i++) await new Promise((r) => setTimeout(r, 100));
        return { src: v.getAttribute("src"), readyState: v.readyState, t0, t1: v.currentTime, error: v.error ? v.error.code : null };
      };
    });
    await page.goto(url);

    // Live view: the page sets data-start-ms when the first frame is shown.
    await page.waitForSelector(".live[data-camera=demo][data-start-ms] video", { timeout: GUARD });
    result.live = await page.evaluate(async () => {
      const box = document.querySelector(".live[data-camera=demo]");
      const v = box.querySelector("video");
      const pixels = () => {
        const c = document.createElement("canvas");
        c.width = 64; c.height = 36;
        const g = c.getContext("2d");
        g.drawImage(v, 0, 0, c.width, c.height);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data);
      };
      const t0 = v.currentTime, p0 = pixels();
      // Wait (hang guard 10 s) until playback has moved by a second.
      for (let i = 0; i < 100 && v.currentTime < t0 + 1; i++) await new Promise((r) => setTimeout(r, 100));
      const t1 = v.currentTime, p1 = pixels();
      let changed = 0, lit = 0;
      for (let i = 0; i < p0.length; i += 4) {
        if (Math.abs(p0[i] - p1[i]) + Math.abs(p0[i + 1] - p1[i + 1]) + Math.abs(p0[i + 2] - p1[i + 2]) > 30) changed++;
        if (p1[i] + p1[i + 1] + p1[i + 2] > 60) lit++;
      }
      return {
        t0, t1, changedPixels: changed, litPixels: lit, of: p0.length / 4,
        startMs: Number(box.dataset.startMs), delayMs: Number(box.dataset.delayMs),
        status: box.querySelector(".status").textContent,
        error: v.error ? v.error.code : null,
      };
    });

    // The event with its thumbnails (loaded images) and its clip.
    await page.waitForSelector(".event img.thumb", { timeout: GUARD });
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll(".event img.thumb")];
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, null, { timeout: GUARD });
    result.event = await page.evaluate(async () => {
      const box = document.querySelector(".event");
      const imgs = [...box.querySelectorAll("img.thumb")];
      const v = box.querySelector("video");
      return {
        id: box.dataset.id,
        title: box.querySelector("h3").textContent,
        thumbs: imgs.map((i) => [i.naturalWidth, i.naturalHeight]),
        poster: v.getAttribute("poster"),
        ...(await window.nvrPlays(v)),
      };
    });

    // The timeline: a span and the event's mark on today's axis.
    await page.waitForSelector(".tl[data-camera=demo] .span", { timeout: GUARD });
    await page.waitForSelector(`.tl[data-camera=demo] .mark[data-id="${result.event.id}"]`, { timeout: GUARD });
    const span = await page.$(".tl[data-camera=demo] .span");
    const box = await span.boundingBox();
    result.timeline = { spanWidthPx: box.width, spans: await page.$$eval(".tl[data-camera=demo] .span", (s) => s.length) };
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForSelector("#playback", { timeout: GUARD });
    result.playback = await page.evaluate(() => window.nvrPlays(document.getElementById("playback")));
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    result.pageErrors = errors;
    const l = result.live, e = result.event, p = result.playback;
    result.ok = l.t1 > l.t0 && l.changedPixels > 0 && l.litPixels > 0 && l.startMs > 0 && Number.isFinite(l.delayMs)
      && e.thumbs.length >= 1 && e.poster && e.readyState >= 2 && e.t1 > e.t0
      && result.timeline.spanWidthPx > 0
      && p.readyState >= 2 && p.t1 > p.t0
      && errors.length === 0;
  } catch (e) {
    result.exception = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
})();
