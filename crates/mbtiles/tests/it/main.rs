//! Integration tests of nvrkit-mbtiles: the reader on every layout, the HTTP router through
//! `tower::ServiceExt::oneshot`, reload and robustness; and, `#[ignore]`d, interop with GDAL,
//! sqlite3 and curl (run by `.ci/run`).

mod fixtures;
mod gdal;
mod grid;
mod http;
mod reader;
mod wmts;

use std::path::Path;
use std::sync::Arc;

use nvrkit_mbtiles::{Catalog, http::Config};

/// A router over the given sources, refreshed once.
pub fn app(sources: &[&Path], config: Config) -> (Arc<Catalog>, axum::Router) {
    let catalog = Arc::new(Catalog::new(
        sources.iter().map(|p| p.to_path_buf()).collect(),
        Default::default(),
    ));
    catalog.refresh().unwrap();
    let router = nvrkit_mbtiles::http::router(catalog.clone(), config);
    (catalog, router)
}
