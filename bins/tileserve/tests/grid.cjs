// Headless Chromium on tileserve's preview page of a tileset with UTFGrids: with the pointer over
// a tile, the bar must show the key under it and its grid_data, in every scheme. The tileset is
// `utfgrid_file` of tests/cli.rs: at zoom 1 the world is 512 px centred in the map; each tile's
// grid has the key `cam-z-x-y` (its stored TMS address) on its middle two rows (64..192 px) and
// nothing on the top and bottom rows.
// usage: NODE_PATH=…/node_modules node grid.cjs http://127.0.0.1:PORT/cams/preview
// Needs Debian's chromium and playwright-core (npm); prints one JSON line; exit 0 when all match.
"use strict";
const { launch } = require("./browser.cjs");

// Pointer offsets from the map's centre and the text expected: the north-west tile (XYZ 1/0/0,
// TMS 1/0/1), the south-east tile (XYZ 1/1/1, TMS 1/1/0), and a blank bottom row.
const POINTS = [
  [-128, -160, 'cam-1-0-1: {"camera":"cam-1-0-1","tile":"1/0/1"}'],
  [128, 96, 'cam-1-1-0: {"camera":"cam-1-1-0","tile":"1/1/0"}'],
  [-128, -20, ""],
];

(async () => {
  const base = process.argv[2];
  const browser = await launch();
  const result = { ok: true, checks: 0, failures: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1100 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    for (const scheme of ["xyz", "tms", "ocularis", "arcgis"]) {
      await page.goto(`${base}?scheme=${scheme}&z=1`);
      const m = await page.evaluate(() => {
        const b = document.getElementById("map").getBoundingClientRect();
        return { x: b.left + b.width / 2, y: b.top + b.height / 2 };
      });
      for (const [dx, dy, want] of POINTS) {
        await page.mouse.move(m.x + dx, m.y + dy);
        // The grid is fetched on the first move over a tile; poll the bar (hang guard: 5 s).
        let got = null;
        for (let i = 0; i < 100; i++) {
          await page.mouse.move(m.x + dx + (i % 2), m.y + dy);
          got = await page.textContent("#grid");
          if (got === want) break;
          await page.waitForTimeout(50);
        }
        result.checks++;
        if (got !== want) {
          result.ok = false;
          result.failures.push({ scheme, dx, dy, want, got });
        }
      }
    }
    if (errors.length) {
      result.ok = false;
      result.failures.push({ errors });
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
})();
