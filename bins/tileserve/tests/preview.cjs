// Headless Chromium on tileserve's preview page: for every scheme and zoom, the map must show
// the world north up and west left. The tileset is a GDAL-made world whose northern half is
// red, southern half blue, and westmost eighth green; the page is asked for each scheme at each
// zoom (`?scheme=S&z=Z`), and the pixels the browser drew are read back at three points.
// usage: NODE_PATH=…/node_modules node preview.cjs http://127.0.0.1:PORT/TILESET/preview MAXZOOM
// Needs Debian's chromium and playwright-core (npm); prints one JSON line; exit 0 when all match.
"use strict";
const { launch } = require("./browser.cjs");

const RED = [200, 30, 30], BLUE = [30, 30, 200], GREEN = [0, 160, 0];
// Points as fractions of the world's width and height, and the colour each must show.
const POINTS = [[0.5, 0.25, RED, "north"], [0.5, 0.75, BLUE, "south"], [0.04, 0.5, GREEN, "west"],
                [0.75, 0.25, RED, "north-east"]];

(async () => {
  const [base, maxzoom] = [process.argv[2], Number(process.argv[3])];
  const browser = await launch();
  const result = { ok: true, checks: 0, failures: [] };
  try {
    // Tall and wide enough to hold the whole world at every zoom up to 2 (1,024 px).
    const page = await browser.newPage({ viewport: { width: 1100, height: 1100 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    for (const scheme of ["xyz", "tms", "ocularis", "arcgis"]) {
      for (let z = 0; z <= maxzoom; z++) {
        await page.goto(`${base}?scheme=${scheme}&z=${z}`);
        const seen = await page.evaluate(async ({ z, points }) => {
          const imgs = () => [...document.querySelectorAll("#map img")];
          for (let i = 0; i < 100 && !imgs().every((im) => im.complete); i++) {
            await new Promise((r) => setTimeout(r, 50));
          }
          const map = document.getElementById("map").getBoundingClientRect();
          const world = 256 * 2 ** z;
          // The page centres the world in the map when no centre is in the metadata.
          const left = map.left + map.width / 2 - world / 2, top = map.top + map.height / 2 - world / 2;
          const canvas = document.createElement("canvas");
          canvas.width = canvas.height = 256;
          const ctx = canvas.getContext("2d", { willReadFrequently: true });
          return {
            broken: imgs().filter((im) => !im.complete || im.naturalWidth === 0).map((im) => im.src),
            status: document.getElementById("status").textContent,
            colors: points.map(([fx, fy]) => {
              const x = left + fx * world, y = top + fy * world;
              const im = imgs().find((im) => {
                const r = im.getBoundingClientRect();
                return x >= r.left && x < r.right && y >= r.top && y < r.bottom;
              });
              if (!im) return null;
              const r = im.getBoundingClientRect();
              ctx.clearRect(0, 0, 256, 256);
              ctx.drawImage(im, 0, 0, 256, 256);
              return [...ctx.getImageData(Math.floor(x - r.left), Math.floor(y - r.top), 1, 1).data.slice(0, 3)];
            }),
          };
        }, { z, points: POINTS });
        seen.colors.forEach((c, i) => {
          result.checks++;
          const [, , want, what] = POINTS[i];
          const near = c && c.every((v, k) => Math.abs(v - want[k]) <= 8);
          if (!near) result.failures.push({ scheme, z, what, want, got: c, status: seen.status });
        });
        if (seen.broken.length) result.failures.push({ scheme, z, broken: seen.broken });
      }
    }
    result.pageErrors = errors;
    result.ok = result.failures.length === 0 && errors.length === 0 && result.checks > 0;
  } catch (e) {
    result.ok = false;
    result.exception = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
})();
