//! The binary runs the scenario suite outside a checkout: the suite is
//! built in, and a `sims/` folder where it runs overrides it.

use std::process::Command;

#[test]
fn the_suite_travels_inside_the_binary() {
    let dir = std::env::temp_dir().join(format!("presence-anywhere-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_presence"))
            .arg("sim")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let output = sim(&["--scenario", "netsplit-heal", "--seed", "1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("built into this binary"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("netsplit-heal"));
    // Every file of sims/ is built in.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../sims"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "toml")
        })
        .count();
    let listing = sim(&["--scenario", "no-such-scenario"]);
    assert_eq!(listing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&listing.stderr).contains("in the suite built into this binary"));
    assert!(files >= 16, "{files} scenario files");
    // A local sims/ folder overrides the built-in suite.
    std::fs::create_dir_all(dir.join("sims")).unwrap();
    let netsplit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sims/netsplit-heal.toml"
    ))
    .unwrap();
    let mine = netsplit.replace("name = \"netsplit-heal\"", "name = \"mine\"");
    assert_ne!(mine, netsplit);
    std::fs::write(dir.join("sims/mine.toml"), mine).unwrap();
    let local = sim(&["--scenario", "netsplit-heal", "--seed", "1"]);
    assert_eq!(
        local.status.code(),
        Some(64),
        "the local folder has no netsplit-heal"
    );
    let said = String::from_utf8_lossy(&local.stderr);
    assert!(
        said.contains("no scenario named \"netsplit-heal\" in sims"),
        "{said}"
    );
    assert!(sim(&["--scenario", "mine", "--seed", "1"]).status.success());
    let _ = std::fs::remove_dir_all(dir);
}
