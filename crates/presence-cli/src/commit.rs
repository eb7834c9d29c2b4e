//! The commit a checkout is at. One function for both its users: the
//! binary, for the provenance of a generated report (the checkout it runs
//! in), and `build.rs`, for the commit built into the binary (the checkout
//! it is built from), which swarm results carry.

use std::path::Path;
use std::process::Command;

/// The short commit of the checkout at `dir`, marked `-dirty` when tracked
/// files outside `reports/` have changes (generated reports being
/// rewritten do not count); `unknown` without git or a commit.
pub fn describe(dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]).filter(|commit| !commit.is_empty()) else {
        return "unknown".to_owned();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!reports",
    ])
    .is_some_and(|status| !status.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}
