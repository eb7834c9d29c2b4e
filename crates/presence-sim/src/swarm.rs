//! Swarm testing, after TigerBeetle's VOPR: every seed draws its own
//! cluster, protocol timings, workload, network rates and fault mix, so a
//! thousand seeds explore a thousand different kinds of trouble.

use crate::distribution::Distribution;
use crate::rng::SimRng;
use crate::scenario::{Checks, ClockFaults, Fault, Network, Protocol, RandomFaults, Scenario, Workload};

/// The scenario that swarm seed `seed` draws (the default preset).
pub fn draw(seed: u64) -> Scenario {
    let mut rng = SimRng::fork(seed, "swarm");
    let broadcast = rng.between(500, 1_500);
    let down = broadcast * rng.between(4, 16);
    let permdown = down * rng.between(2, 6);
    let max_silent = (down / broadcast - 1).min(10) as u32;
    let fault_phase_ms = rng.between(20_000, 90_000);
    // A fault is enabled with probability one half, at a random weight.
    let weight = |rng: &mut SimRng| {
        if rng.chance(0.5) {
            rng.between(1, 3) as u32
        } else {
            0
        }
    };
    let random_faults = RandomFaults {
        interval_ms: rng.between(2_000, 15_000),
        partition: weight(&mut rng),
        crash: weight(&mut rng),
        pause: weight(&mut rng),
        clog: weight(&mut rng),
        shutdown: weight(&mut rng),
        depart: 0,
        clock_jump: 0,
        forge: 0,
    };
    let rate = |rng: &mut SimRng, most: f64| {
        if rng.chance(0.5) {
            rng.between(0, 100) as f64 / 100.0 * most
        } else {
            0.0
        }
    };
    let network = Network {
        delay_min_ms: rng.between(0, 5),
        delay_mean_ms: rng.between(1, 50),
        loss: rate(&mut rng, 0.3),
        duplicate: rate(&mut rng, 0.2),
        reorder: rate(&mut rng, 0.3),
        reorder_delay_ms: rng.between(10, 2_000),
        queue_limit: 1_000,
        encode_messages: true,
    };
    let mut workload = Workload {
        clients_per_node: rng.between(1, 4) as usize,
        topics: rng.between(1, 3) as usize,
        keys: rng.between(1, 5) as usize,
        op_interval_ms: rng.between(200, 3_000),
        initial_presences_per_node: 0,
        max_ops: None,
        topic_distribution: Distribution::Uniform,
        key_distribution: Distribution::Uniform,
        shared_pids: false,
    };
    let mut random_faults = random_faults;
    let nodes = rng.between(2, 5) as usize;
    // Drawn after everything the first wave drew, so those draws stay as
    // they were.
    draw_skew(&mut rng, &mut workload);
    draw_departures_and_shared_pids(&mut rng, nodes, &mut random_faults, &mut workload);
    let clock = draw_clock_faults(&mut rng, down, &mut random_faults);
    // BUGGIFY in half the seeds: rare legal paths taken often.
    let buggify = rng.chance(0.5);
    let mut scenario = Scenario {
        name: format!("swarm-{seed}"),
        description: "drawn by `presence swarm`".into(),
        seeds: vec![seed],
        nodes,
        fault_phase_ms,
        // Heal, then at worst: a down period to notice a silent peer, a
        // retirement round trip, and anti-entropy over lossy-free links.
        liveness_bound_ms: 3 * down + 30 * broadcast,
        protocol: Protocol {
            broadcast_period_ms: Some(broadcast),
            max_silent_periods: Some(max_silent.max(1)),
            down_period_ms: Some(down),
            permdown_period_ms: Some(permdown),
            clock_sample_periods: None,
            transfer_timeout_ms: Some(2 * broadcast),
            retirement_memory_ms: None,
        },
        workload,
        network,
        random_faults,
        checks: Checks::default(),
        clock,
        buggify,
        faults: Vec::new(),
    };
    // The retirement memory: the shortest this world allows, or a little
    // longer, so a departed base is forgotten as soon as forgetting is safe.
    // The forging nemesis in a third of the seeds (frames are always bytes
    // here), before the memory, which must then tolerate its replays.
    if rng.below(3) == 0 {
        scenario.random_faults.forge = rng.between(1, 3) as u32;
    }
    let least = scenario
        .forgetting_tolerates_ms()
        .saturating_mul(2)
        .max(permdown)
        .saturating_add(1);
    let memory = least + rng.between(0, permdown);
    scenario.protocol.retirement_memory_ms = Some(memory);
    // A long world in a sixth of the seeds: the fault phase outlasts a
    // permdown and the memory, so departed nodes are forgotten and nodes
    // cut off that long come back as strangers, under the same random
    // faults as everything else. (A world whose memory is over ten
    // minutes, a skewed or forging one, stays short.)
    if rng.below(6) == 0 && memory <= 600_000 {
        scenario.fault_phase_ms = memory + 2 * permdown + rng.between(0, 60_000);
        if scenario.nodes >= 3 {
            scenario.random_faults.depart = scenario.random_faults.depart.max(1);
        }
        // Half of them cut one node off past a permdown and the memory
        // (random partitions, whose heals would end the cut, are off).
        if rng.chance(0.5) {
            let at_ms = rng.between(1_000, 10_000);
            let node = rng.below(scenario.nodes);
            scenario.random_faults.partition = 0;
            scenario.faults = vec![
                Fault::Isolate {
                    at_ms,
                    nodes: vec![node],
                },
                Fault::Heal {
                    at_ms: at_ms + permdown + memory + 2 * down,
                },
            ];
            scenario.fault_phase_ms = scenario.fault_phase_ms.max(at_ms + permdown + memory + 3 * down);
        }
    }
    scenario
}

/// How the seed's clients share names, one of four worlds, about equally
/// often: uniform (as drawn); Zipf-distributed keys over more keys; a hot
/// key with many clients per node, so that key has dozens of pids on every
/// node (a guest account, one user with many tabs); a hot room with
/// Zipf-distributed keys, where each client's pid is shared across rooms.
fn draw_skew(rng: &mut SimRng, workload: &mut Workload) {
    let share = |rng: &mut SimRng| rng.between(30, 90) as f64 / 100.0;
    let exponent = |rng: &mut SimRng| rng.between(80, 150) as f64 / 100.0;
    match rng.below(4) {
        0 => {}
        1 => {
            workload.keys = rng.between(5, 40) as usize;
            workload.key_distribution = Distribution::Zipf {
                exponent: exponent(rng),
            };
        }
        2 => {
            workload.clients_per_node = rng.between(8, 40) as usize;
            workload.keys = rng.between(2, 10) as usize;
            workload.key_distribution = Distribution::Hot { share: share(rng) };
        }
        _ => {
            workload.clients_per_node = rng.between(4, 16) as usize;
            workload.topics = rng.between(2, 6) as usize;
            workload.keys = rng.between(5, 20) as usize;
            workload.topic_distribution = Distribution::Hot { share: share(rng) };
            workload.key_distribution = Distribution::Zipf {
                exponent: exponent(rng),
            };
        }
    }
}

/// The second wave's world: in a third of the clusters of three or more
/// nodes, nodes may leave for good (a crash or a shutdown, never back);
/// in a third of all seeds, client `c` has one pid on every node.
fn draw_departures_and_shared_pids(
    rng: &mut SimRng,
    nodes: usize,
    random_faults: &mut RandomFaults,
    workload: &mut Workload,
) {
    if nodes >= 3 && rng.below(3) == 0 {
        random_faults.depart = rng.between(1, 2) as u32;
    }
    workload.shared_pids = rng.below(3) == 0;
}

/// Skewed clocks in a third of the seeds: offsets up to an hour, drift
/// up to 500 ppm, and steps forward or back of up to a down period (half
/// of those seeds), which the failure detector must ride out.
fn draw_clock_faults(rng: &mut SimRng, down_ms: u64, random_faults: &mut RandomFaults) -> ClockFaults {
    if rng.below(3) != 0 {
        return ClockFaults::default();
    }
    let mut clock = ClockFaults {
        max_offset_ms: rng.between(0, 3_600_000),
        max_drift_ppm: rng.between(0, 500),
        max_jump_ms: 0,
    };
    if rng.chance(0.5) {
        clock.max_jump_ms = rng.between(1, down_ms);
        random_faults.clock_jump = rng.between(1, 2) as u32;
    }
    clock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_scenarios_are_valid_and_reproducible() {
        for seed in 0..200 {
            let scenario = draw(seed);
            assert_eq!(scenario.validate(), Ok(()), "seed {seed}");
            assert_eq!(draw(seed), scenario);
        }
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn seeds_draw_departures_and_shared_pids() {
        let drawn: Vec<Scenario> = (0..300).map(draw).collect();
        let departing = drawn.iter().filter(|s| s.random_faults.depart > 0).count();
        let shared = drawn.iter().filter(|s| s.workload.shared_pids).count();
        assert!(
            (40..=120).contains(&departing),
            "{departing} of 300 draw departures"
        );
        assert!((60..=140).contains(&shared), "{shared} of 300 share pids");
        assert!(drawn.iter().all(|s| s.random_faults.depart == 0 || s.nodes >= 3));
    }

    #[test]
    fn seeds_draw_clock_faults() {
        let drawn: Vec<Scenario> = (0..300).map(draw).collect();
        let skewed = drawn.iter().filter(|s| s.clock != ClockFaults::default()).count();
        let jumping = drawn.iter().filter(|s| s.random_faults.clock_jump > 0).count();
        assert!((60..=140).contains(&skewed), "{skewed} of 300 skew clocks");
        assert!((20..=80).contains(&jumping), "{jumping} of 300 step clocks");
        assert!(drawn
            .iter()
            .all(|s| s.clock.max_jump_ms <= s.protocol.down_period_ms.unwrap_or(u64::MAX)));
    }

    #[test]
    fn seeds_draw_every_kind_of_skew() {
        let drawn: Vec<Workload> = (0..200).map(|seed| draw(seed).workload).collect();
        let hot_keys = drawn
            .iter()
            .filter(|workload| matches!(workload.key_distribution, Distribution::Hot { .. }))
            .count();
        let zipf_keys = drawn
            .iter()
            .filter(|workload| matches!(workload.key_distribution, Distribution::Zipf { .. }))
            .count();
        let hot_rooms = drawn
            .iter()
            .filter(|workload| matches!(workload.topic_distribution, Distribution::Hot { .. }))
            .count();
        let uniform = drawn
            .iter()
            .filter(|workload| workload.key_distribution == Distribution::Uniform)
            .count();
        // Each of the four worlds about a quarter of the time; Zipf keys
        // come in two of them.
        for (what, count, expected) in [
            ("hot keys", hot_keys, 25..=80),
            ("zipf keys", zipf_keys, 70..=130),
            ("hot rooms", hot_rooms, 25..=80),
            ("uniform", uniform, 25..=80),
        ] {
            assert!(expected.contains(&count), "{what}: {count} of 200");
        }
        assert!(
            drawn.iter().any(|workload| workload.clients_per_node >= 30
                && matches!(workload.key_distribution, Distribution::Hot { .. })),
            "some seeds give a hot key dozens of pids per node"
        );
    }
}
