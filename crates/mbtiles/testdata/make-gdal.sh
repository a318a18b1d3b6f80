#!/usr/bin/env bash
# Makes real MBTiles files with GDAL (Debian `gdal-bin`), for the interop tests and benchmarks:
#   raster-png.mbtiles   gdal_translate -of MBTILES (PNG tiles) + gdaladdo overviews
#   raster-jpeg.mbtiles  the same with JPEG tiles
#   vector.mbtiles       ogr2ogr -f MBTILES: gzip'd Mapbox Vector Tiles and a `json` metadata row
# from the crude world outline in world.geojson and five cities in cities.geojson (written by hand
# for these tests: rough continents, good enough to see at a glance that north is up).
#
# Usage: make-gdal.sh OUTDIR [SIZE]   SIZE: raster width = height in pixels, a power of two >= 256
#   (default 2048: zoom 0..3, 85 tiles; 8192 gives zoom 0..5, 1,365 tiles, used by the benchmark).
set -euo pipefail
out=${1:?usage: make-gdal.sh OUTDIR [SIZE]}
size=${2:-2048}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cd "$out"
rm -f base.tif land.gpkg raster-png.mbtiles raster-jpeg.mbtiles vector.mbtiles

# Half the Web Mercator world's width in metres: the raster covers the whole EPSG:3857 square,
# so its pixels fall exactly on the tile grid.
m=20037508.342789244
gdal_create -q -of GTiff -outsize "$size" "$size" -bands 3 -ot Byte \
  -burn 70 -burn 130 -burn 180 -a_srs EPSG:3857 -a_ullr -$m $m $m -$m base.tif
ogr2ogr -q -f GPKG -t_srs EPSG:3857 land.gpkg "$here/world.geojson" -nln land
gdal_rasterize -q -b 1 -b 2 -b 3 -burn 110 -burn 170 -burn 90 -where "kind = 'land'" -l land land.gpkg base.tif
gdal_rasterize -q -b 1 -b 2 -b 3 -burn 245 -burn 245 -burn 250 -where "kind = 'ice'" -l land land.gpkg base.tif

for fmt in PNG JPEG; do
  f=raster-$(echo $fmt | tr 'A-Z' 'a-z').mbtiles
  gdal_translate -q -of MBTILES -co TILE_FORMAT=$fmt -co NAME="World ($fmt)" base.tif "$f"
  levels=()
  n=2
  while [ $((size / n)) -ge 256 ]; do levels+=("$n"); n=$((n * 2)); done
  gdaladdo -q -r average "$f" "${levels[@]}"
done

ogr2ogr -q -f GPKG -t_srs EPSG:3857 vec.gpkg "$here/world.geojson" -nln land
ogr2ogr -q -update -f GPKG -t_srs EPSG:3857 vec.gpkg "$here/cities.geojson" -nln cities
ogr2ogr -q -f MBTILES vector.mbtiles vec.gpkg -dsco MAXZOOM=3 -dsco NAME="World (vector)"
rm -f base.tif land.gpkg vec.gpkg
ls -l "$out"/*.mbtiles
