//! Fuzzing the scenario parser with bolero, under plain `cargo test` (see
//! presence-core's tests/fuzz.rs for the knobs; the longer run is
//! `scripts/fuzz`): no text makes it panic, and whatever it accepts is
//! within the documented bounds (it validates), so no accepted scenario can
//! allocate without bound or wrap time.

use std::path::Path;

use bolero::check;
use presence_sim::Scenario;

#[test]
fn no_text_makes_the_scenario_parser_panic() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(scenario) = Scenario::parse(text, Path::new("fuzzed.toml")) {
                assert_eq!(scenario.validate(), Ok(()));
            }
        }
    });
}

/// Near-valid scenarios: a committed one with one byte changed.
#[test]
fn a_scenario_with_one_byte_changed_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sims");
    let texts: Vec<String> = ["netsplit-heal", "clock-skew", "forged-bytes"]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap())
        .collect();
    check!()
        .with_type::<(u8, u16, u8)>()
        .for_each(|(which, at, byte): &(u8, u16, u8)| {
            let mut bytes = texts[usize::from(*which) % texts.len()].clone().into_bytes();
            let at = usize::from(*at) % bytes.len();
            bytes[at] = *byte;
            if let Ok(text) = String::from_utf8(bytes) {
                if let Ok(scenario) = Scenario::parse(&text, Path::new("fuzzed.toml")) {
                    assert_eq!(scenario.validate(), Ok(()));
                }
            }
        });
}
