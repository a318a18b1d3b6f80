// Headless Chromium on tileserve's preview page with --cameras and --nvr: the cameras of a
// cameras.json are drawn on a GDAL-made world where they are, in the colour of their state,
// and an alarm posted to nvr turns the camera's marker from online to alarm.
// usage: NODE_PATH=…/node_modules node cameras.cjs PREVIEW_URL NVR_URL
// The page is opened at zoom 2; camera `demo` (nvr's demo camera) is at lon 90, lat -45, camera
// `plan` at pixel [256, 700] of zoom 2 (unknown to nvr). Prints one JSON line; exit 0 when all
// checks pass.
"use strict";
const zlib = require("zlib");
const { launch } = require("./browser.cjs");

const ONLINE = [0, 200, 0], ALARM = [224, 0, 0], UNKNOWN = [136, 136, 136];

// The colour of one screen pixel: a 1 × 1 screenshot, its PNG decoded here (one row of one
// pixel: every PNG filter leaves the bytes as they are).
async function pixel(page, x, y) {
  const png = await page.screenshot({ clip: { x: Math.floor(x), y: Math.floor(y), width: 1, height: 1 } });
  const idat = [];
  for (let i = 8; i < png.length;) {
    const len = png.readUInt32BE(i), type = png.toString("latin1", i + 4, i + 8);
    if (type === "IDAT") idat.push(png.subarray(i + 8, i + 8 + len));
    i += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  return [raw[1], raw[2], raw[3]];
}

const near = (c, want) => c.every((v, k) => Math.abs(v - want[k]) <= 8);

function project(lon, lat, z) {
  const n = 256 * 2 ** z, s = Math.sin(lat * Math.PI / 180);
  return [(lon + 180) / 360 * n, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * n];
}

(async () => {
  const [preview, nvr] = [process.argv[2], process.argv[3]];
  const browser = await launch();
  const result = { ok: false, checks: [], failures: [] };
  const check = (what, good, got) => { result.checks.push(what); if (!good) result.failures.push({ what, got }); };
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1100 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${preview}?z=2`);
    // Waits (hang guard 60 s) until camera `id` is drawn in `state`; its marker's centre.
    const marker = async (id, state) => {
      const sel = `#cams g.cam[data-id="${id}"][data-state="${state}"] circle`;
      await page.waitForSelector(sel, { state: "attached", timeout: 60000 });
      return page.evaluate((sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        const m = document.getElementById("map").getBoundingClientRect();
        return { x: r.left + r.width / 2, y: r.top + r.height / 2, map: [m.left, m.top, m.width, m.height] };
      }, sel);
    };
    const on = await marker("demo", "online");
    // Where lon 90, lat -45 is at zoom 2 with the world centred in the map.
    const [ml, mt, mw, mh] = on.map, world = 1024, [wx, wy] = project(90, -45, 2);
    const want = [ml + mw / 2 - world / 2 + wx, mt + mh / 2 - world / 2 + wy];
    check("demo is at lon 90, lat -45", Math.abs(on.x - want[0]) <= 2 && Math.abs(on.y - want[1]) <= 2, [on.x, on.y, want]);
    const c1 = await pixel(page, on.x, on.y);
    check("demo is drawn online (green)", near(c1, ONLINE), c1);
    const plan = await marker("plan", "unknown");
    const wantPlan = [ml + mw / 2 - world / 2 + 256, mt + mh / 2 - world / 2 + 700];
    check("plan is at its pixel", Math.abs(plan.x - wantPlan[0]) <= 2 && Math.abs(plan.y - wantPlan[1]) <= 2, [plan.x, plan.y, wantPlan]);
    const c2 = await pixel(page, plan.x, plan.y);
    check("plan is drawn unknown (grey)", near(c2, UNKNOWN), c2);
    const cone = await page.$$eval('#cams g.cam[data-id="demo"] path', (p) => p.length);
    check("demo has a heading cone", cone === 1, cone);

    // An alarm for the demo camera, posted to nvr as a camera's integration would.
    const r = await fetch(`${nvr}/api/events`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ camera: "demo", kind: "motion" }),
    });
    check("nvr accepted the event", r.status === 202, r.status);
    const al = await marker("demo", "alarm");
    const c3 = await pixel(page, al.x, al.y);
    check("demo is drawn alarming (red)", near(c3, ALARM), c3);
    result.pageErrors = errors;
    result.ok = result.failures.length === 0 && errors.length === 0;
  } catch (e) {
    result.exception = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
})();
