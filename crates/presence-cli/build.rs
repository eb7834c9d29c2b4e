//! Puts the scenario suite (`sims/*.toml`) inside the binary, so that
//! `presence sim` runs anywhere, a fleet's container included. The list is
//! made from the folder at build time: a scenario added there is in the
//! next build, with nothing else to edit.

use std::fmt::Write as _;
use std::path::PathBuf;

#[path = "src/commit.rs"]
mod commit;

/// Builds in the commit this binary is built from, for the results of a
/// fleet's shards (which run with no checkout); rebuilt when HEAD or the
/// index moves.
fn build_commit(root: &std::path::Path) {
    println!("cargo:rustc-env=PRESENCE_BUILD_COMMIT={}", commit::describe(root));
    for file in [".git/HEAD", ".git/index"] {
        let path = root.join(file);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    build_commit(&manifest.join("../.."));
    let sims = manifest.join("../../sims");
    println!("cargo:rerun-if-changed={}", sims.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sims)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut code = String::from("/// The scenario files of `sims/` when this binary was built.\npub const EMBEDDED: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_name().expect("a file").to_string_lossy();
        let path = file.canonicalize().expect("a readable scenario file");
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("a string");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("suite.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
