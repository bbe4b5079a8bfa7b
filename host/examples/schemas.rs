//! Writes one embedded schema catalog from Kubernetes' OpenAPI document; run by
//! `host/schemas/generate.sh`, not by hand:
//!
//!     cargo run -p kitsync --example schemas -- SWAGGER_JSON MODULE_VERSION OUT_JSON_GZ

use anyhow::{Context, Result, bail};
use std::io::Write;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [swagger, version, out] = args.as_slice() else {
        bail!("usage: schemas SWAGGER_JSON MODULE_VERSION OUT_JSON_GZ");
    };
    let text = std::fs::read(swagger).with_context(|| format!("reading {swagger}"))?;
    let document: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {swagger}"))?;
    let catalog = kitsync::schema::catalog::reduce(&document, version).map_err(anyhow::Error::msg)?;
    let json = serde_json::to_vec(&catalog)?;
    // A fixed header (no file name, mtime 0) so the same input gives the same bytes.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(&json)?;
    let gzip = encoder.finish()?;
    std::fs::write(out, &gzip).with_context(|| format!("writing {out}"))?;
    eprintln!("{out}: {} bytes of JSON, {} compressed", json.len(), gzip.len());
    Ok(())
}
